"""The gate: candidates ranked on paired predictions, the shipped model's metrics, the check
against a promoted model, and the promote command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import COST

from componentx.candidates.registry import BUILTIN
from componentx.decisions.gate import (
    choose_candidate,
    format_verdict,
    frame_report,
    gate_verdict,
    rank_candidates,
)
from componentx.errors import UserError
from componentx.serving.promote import README, promote

EVALUATE = {"decision": "expected_cost", "bootstrap": 200, "seed": 0}
GATE = {"split": "validation", "reference": "none", "ece_tolerance": 0.02, "bootstrap": 300,
        "seed": 0}
SELECTION = {"mode": "validation", "folds": 0, "windows": 3000, "vehicles": 3000}
SIMPLICITY = {r.name: r.simplicity for r in BUILTIN}  # gbdt, rocket, sequence
PREDICTIONS = Path("data/predictions")


def predictions(y, predicted, probs) -> pd.DataFrame:
    frame = pd.DataFrame({"vehicle_id": np.arange(len(y)), "class_label": y})
    for c in range(probs.shape[1]):
        frame[f"logit_{c}"] = np.log(probs[:, c])
    for c in range(probs.shape[1]):
        frame[f"prob_{c}"] = probs[:, c]
    frame["predicted"] = predicted
    return frame


def fleet(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    y = rng.choice(5, n, p=[0.95, 0.0125, 0.0125, 0.0125, 0.0125])
    probs = np.full((n, 5), 0.01)
    probs[np.arange(n), y] = 0.96
    return rng, y, probs


def half_right(rng, y):
    return np.where(rng.random(len(y)) < 0.5, y, 0)


def test_a_clearly_cheaper_model_passes():
    rng, y, probs = fleet()
    verdict = gate_verdict(predictions(y, y, probs), predictions(y, half_right(rng, y), probs),
                           COST, ece_tolerance=0.02, n_boot=300)
    assert verdict["passed"]
    assert verdict["checks"]["cost_total"]["ci"][1] < 0


def test_a_model_cheaper_only_by_noise_does_not_pass():
    rng, y, probs = fleet(1)
    reference_pred = half_right(rng, y)
    run_pred = reference_pred.copy()
    run_pred[np.flatnonzero(reference_pred != y)[:1]] = y[reference_pred != y][:1]  # one fix
    verdict = gate_verdict(predictions(y, run_pred, probs),
                           predictions(y, reference_pred, probs), COST, 0.02, n_boot=300)
    cost = verdict["checks"]["cost_total"]
    assert cost["difference"] < 0 and cost["ci"][1] >= 0
    assert not verdict["passed"]


def test_worse_calibration_fails_even_when_cheaper():
    rng, y, probs = fleet(2)
    flat = np.full_like(probs, 0.2)  # right decisions, useless probabilities
    verdict = gate_verdict(predictions(y, y, flat), predictions(y, half_right(rng, y), probs),
                           COST, 0.02, n_boot=300)
    assert verdict["checks"]["cost_total"]["passed"]
    assert not verdict["checks"]["brier"]["passed"] and not verdict["checks"]["ece"]["passed"]
    assert not verdict["passed"]


def test_other_vehicles_are_an_error():
    _, y, probs = fleet(3)
    run = predictions(y, y, probs)
    other = run.assign(vehicle_id=run["vehicle_id"] + 1)
    with pytest.raises(UserError, match="same vehicles"):
        gate_verdict(run, other, COST, 0.02)
    with pytest.raises(UserError, match="same vehicles"):
        rank_candidates({"gbdt": run, "sequence": other}, COST, 100, 0, SIMPLICITY)


def test_ranking_is_by_cost_then_log_loss_then_simplicity():
    rng, y, probs = fleet(5)
    worse = half_right(rng, y)
    vague = 0.5 * probs + 0.1  # the same decisions, a higher log loss
    frames = {"sequence": predictions(y, worse, probs), "rocket": predictions(y, y, vague),
              "gbdt": predictions(y, y, probs)}
    ranking = rank_candidates(frames, COST, 300, 0, SIMPLICITY)
    assert [row["name"] for row in ranking] == ["gbdt", "rocket", "sequence"]
    assert ranking[0]["vs_best"] is None
    assert ranking[1]["vs_best"]["cost_total"]["difference"] == 0
    assert ranking[1]["vs_best"]["brier"]["difference"] > 0  # candidate minus best
    assert ranking[2]["vs_best"]["cost_total"]["ci"][0] > 0
    # identical predictions: the simpler candidate ranks first, whatever the order given
    same = {"sequence": frames["gbdt"], "rocket": frames["gbdt"],
            "gbdt": frames["gbdt"]}
    assert [row["name"] for row in rank_candidates(same, COST, 100, 0, SIMPLICITY)] == [
        "gbdt", "rocket", "sequence"]
    reversed_simplicity = {"gbdt": 2, "rocket": 1, "sequence": 0}
    assert [row["name"] for row in rank_candidates(same, COST, 100, 0, reversed_simplicity)] \
        == ["sequence", "rocket", "gbdt"]


def write_candidates(frames: dict[str, dict[str, pd.DataFrame]], selection=SELECTION) -> dict:
    """Each candidate's predictions per split where its stage leaves them; its metrics file's
    ``selection``."""
    for name, splits in frames.items():
        folder = PREDICTIONS / name
        folder.mkdir(parents=True, exist_ok=True)
        for split, frame in splits.items():
            frame.to_parquet(folder / f"{split}.parquet", index=False)
    return {name: {"selection": selection} for name in frames}


def three_candidates(seed):
    """The sequence model right everywhere, the others half right, on both splits."""
    rng, y, probs = fleet(seed)
    _, y_test, probs_test = fleet(seed + 100, n=1000)
    return {
        "sequence": {"validation": predictions(y, y, probs),
                     "test": predictions(y_test, y_test, probs_test)},
        **{name: {"validation": predictions(y, half_right(rng, y), probs),
                  "test": predictions(y_test, half_right(rng, y_test), probs_test)}
           for name in ("gbdt", "rocket")},
    }


def test_the_cheapest_candidate_ships_with_its_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = three_candidates(6)
    verdict = choose_candidate(write_candidates(frames), PREDICTIONS, SIMPLICITY, COST, GATE,
                               EVALUATE)
    assert verdict["chosen"] == verdict["ship"] == verdict["shipped"]["name"] == "sequence"
    assert verdict["significant"] and verdict["reference"] is None
    assert verdict["candidates"][0]["name"] == "sequence"
    for split in ("validation", "test"):
        expected = frame_report(frames["sequence"][split], COST, EVALUATE)
        assert verdict["shipped"][split] == expected  # the keys of evaluate.json's split blocks
        assert {"accuracy", "cost_total", "macro_f1", "brier", "ece"} <= set(expected)
    assert "ships: sequence" in format_verdict(verdict)
    json.dumps(verdict)  # the verdict is metrics/gate.json


def test_the_best_estimate_ships_when_no_difference_is_significant(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng, y, probs = fleet(7, n=300)
    pred = half_right(rng, y)
    one_fix = pred.copy()
    one_fix[np.flatnonzero(pred != y)[:1]] = y[pred != y][:1]
    frames = {name: {"validation": predictions(y, p, probs), "test": predictions(y, p, probs)}
              for name, p in (("gbdt", pred), ("rocket", pred), ("sequence", one_fix))}
    verdict = choose_candidate(write_candidates(frames), PREDICTIONS, SIMPLICITY, COST, GATE,
                               EVALUATE)
    assert verdict["ship"] == "sequence" and not verdict["significant"]
    assert "not significantly cheaper than the runner-up" in format_verdict(verdict)


def test_candidates_on_different_selection_windows_are_an_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    reports = write_candidates(three_candidates(8))
    reports["rocket"] = {"selection": {**SELECTION, "mode": "cross_validation", "folds": 5}}
    with pytest.raises(UserError, match="different selection windows"):
        choose_candidate(reports, PREDICTIONS, SIMPLICITY, COST, GATE, EVALUATE)


@pytest.mark.parametrize("promoted_is_better", [False, True])
def test_a_promoted_model_is_replaced_only_by_a_clearly_cheaper_one(tmp_path, monkeypatch,
                                                                    promoted_is_better):
    monkeypatch.chdir(tmp_path)
    frames = three_candidates(9)
    promoted = Path("promoted/predictions")
    promoted.mkdir(parents=True)
    settings = {**GATE, "reference": str(promoted)}
    with pytest.raises(UserError, match=r"gate.reference promoted/predictions: not the "):
        choose_candidate(write_candidates(frames), PREDICTIONS, SIMPLICITY, COST, settings,
                         EVALUATE)
    Path("promoted/bundle.json").write_text("{}")
    source = frames["sequence" if promoted_is_better else "gbdt"]
    for split, frame in source.items():
        frame.to_parquet(promoted / f"{split}.parquet", index=False)
    verdict = choose_candidate(write_candidates(frames), PREDICTIONS, SIMPLICITY, COST,
                               settings, EVALUATE)
    assert verdict["chosen"] == "sequence"
    assert verdict["reference"]["path"] == str(promoted)
    assert verdict["reference"]["passed"] is not promoted_is_better
    assert verdict["ship"] == ("reference" if promoted_is_better else "sequence")
    assert verdict["shipped"]["test"] == frame_report(source["test"], COST, EVALUATE)
    text = format_verdict(verdict)
    assert ("the promoted model stays" in text) is promoted_is_better


def test_promote_copies_the_bundle_the_gate_ships(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    frames = three_candidates(10)
    write_candidates(frames)
    for kind, folder in (("sequence", "models/bundles/sequence"),
                         ("gbdt", "models/bundles/gbdt"),
                         ("rocket", "models/bundles/rocket"),
                         ("sequence", "models/bundle")):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "bundle.json").write_text(json.dumps({"kind": kind}))
    gate = Path("metrics/gate.json")
    gate.parent.mkdir()
    gate.write_text(json.dumps(choose_candidate({n: {"selection": SELECTION} for n in frames},
                                                PREDICTIONS, SIMPLICITY, COST, GATE,
                                                EVALUATE)))
    assert promote(Path("models/bundle"), gate, Path("promoted")) == "sequence"
    pd.testing.assert_frame_equal(pd.read_parquet("promoted/predictions/validation.parquet"),
                                  frames["sequence"]["validation"])
    assert json.loads(Path("promoted/gate.json").read_text())["ship"] == "sequence"
    assert Path("promoted/README.md").is_file()
    # Later runs gate against the promoted model; a run that does not beat it promotes nothing
    # unless forced, which promotes the chosen candidate's bundle.
    for name in ("gbdt", "rocket"):
        write_candidates({name: frames["sequence"]})
    write_candidates({"sequence": {split: frame.assign(predicted=0)
                                   for split, frame in frames["sequence"].items()}})
    verdict = choose_candidate({n: {"selection": SELECTION} for n in frames}, PREDICTIONS,
                               SIMPLICITY, COST,
                               {**GATE, "reference": "promoted/predictions"}, EVALUATE)
    assert verdict["ship"] == "reference" and verdict["chosen"] == "gbdt"
    gate.write_text(json.dumps(verdict))
    with pytest.raises(UserError, match="nothing to promote"):
        promote(Path("models/bundle"), gate, Path("promoted"))
    assert promote(Path("models/bundle"), gate, Path("promoted"), force=True) == "gbdt"
    assert json.loads(Path("promoted/bundle.json").read_text())["kind"] == "gbdt"


def test_the_committed_promoted_folder_says_what_promote_writes():
    readme = Path(__file__).resolve().parents[1] / "promoted" / "README.md"
    assert readme.read_text() == README.format(target="promoted")
