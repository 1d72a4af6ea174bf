"""Promotion gate verdicts on paired predictions, and the promote command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import COST

from componentx.decisions.gate import format_verdict, gate_verdict
from componentx.errors import UserError
from componentx.serving.promote import promote


def predictions(y, predicted, probs) -> pd.DataFrame:
    frame = pd.DataFrame({"vehicle_id": np.arange(len(y)), "class_label": y})
    for c in range(5):
        frame[f"prob_{c}"] = probs[:, c]
    frame["predicted"] = predicted
    return frame


def fleet(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    y = rng.choice(5, n, p=[0.95, 0.0125, 0.0125, 0.0125, 0.0125])
    probs = np.full((n, 5), 0.01)
    probs[np.arange(n), y] = 0.96
    return rng, y, probs


def verdict_of(run, reference):
    verdict = gate_verdict(run, reference, COST, ece_tolerance=0.02, n_boot=300)
    return verdict | {"run": "sequence model", "reference": "baseline", "split": "validation"}


def test_a_clearly_cheaper_model_passes_and_is_shipped():
    rng, y, probs = fleet()
    reference = predictions(y, np.where(rng.random(len(y)) < 0.5, y, 0), probs)
    run = predictions(y, y, probs)
    verdict = verdict_of(run, reference)
    assert verdict["passed"] and verdict["ship"] == "run"
    assert verdict["checks"]["cost_total"]["ci"][1] < 0
    assert "PASSED" in format_verdict(verdict)


def test_a_model_cheaper_only_by_noise_does_not_replace_the_reference():
    rng, y, probs = fleet(1)
    reference_pred = np.where(rng.random(len(y)) < 0.5, y, 0)
    run_pred = reference_pred.copy()
    run_pred[np.flatnonzero(reference_pred != y)[:1]] = y[reference_pred != y][:1]  # one fix
    verdict = verdict_of(predictions(y, run_pred, probs), predictions(y, reference_pred, probs))
    cost = verdict["checks"]["cost_total"]
    assert cost["difference"] < 0 and cost["ci"][1] >= 0
    assert not verdict["passed"] and verdict["ship"] == "reference"
    assert "ship the reference" in format_verdict(verdict)


def test_worse_calibration_fails_even_when_cheaper():
    rng, y, probs = fleet(2)
    reference = predictions(y, np.where(rng.random(len(y)) < 0.5, y, 0), probs)
    flat = np.full_like(probs, 0.2)  # right decisions, useless probabilities
    verdict = verdict_of(predictions(y, y, flat), reference)
    assert verdict["checks"]["cost_total"]["passed"]
    assert not verdict["checks"]["brier"]["passed"] and not verdict["checks"]["ece"]["passed"]
    assert not verdict["passed"]


def test_other_vehicles_are_an_error():
    _, y, probs = fleet(3)
    run = predictions(y, y, probs)
    other = run.assign(vehicle_id=run["vehicle_id"] + 1)
    with pytest.raises(UserError, match="same vehicles"):
        gate_verdict(run, other, COST, 0.02)


def test_promote_copies_the_bundle_the_gate_ships(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, y, probs = fleet(4, n=50)
    frames = {"data/predictions": predictions(y, y, probs),
              "data/baseline_predictions": predictions(y, np.zeros_like(y), probs)}
    for kind, folder in (("sequence", "models/bundles/sequence"),
                         ("baseline", "models/bundles/baseline"),
                         ("baseline", "models/bundle")):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "bundle.json").write_text(json.dumps({"kind": kind}))
    for folder, frame in frames.items():
        Path(folder).mkdir(parents=True)
        frame.to_parquet(Path(folder) / "validation.parquet", index=False)
    gate = Path("metrics/gate.json")
    gate.parent.mkdir()
    gate.write_text(json.dumps({"passed": False, "ship": "reference",
                                "reference": "data/baseline_predictions"}))
    assert promote(Path("models/bundle"), gate, Path("promoted")) == "baseline"
    promoted = pd.read_parquet("promoted/predictions/validation.parquet")
    pd.testing.assert_frame_equal(promoted, frames["data/baseline_predictions"])
    assert json.loads(Path("promoted/bundle.json").read_text())["kind"] == "baseline"
    assert json.loads(Path("promoted/gate.json").read_text())["ship"] == "reference"
    # Later runs gate against the promoted model; a run that does not beat it promotes nothing.
    gate.write_text(json.dumps({"passed": False, "ship": "reference",
                                "reference": "promoted/predictions"}))
    with pytest.raises(UserError, match="nothing to promote"):
        promote(Path("models/bundle"), gate, Path("promoted"))
    assert promote(Path("models/bundle"), gate, Path("promoted"), force=True) == "sequence"
    pd.testing.assert_frame_equal(pd.read_parquet("promoted/predictions/validation.parquet"),
                                  frames["data/predictions"])
