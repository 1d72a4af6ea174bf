"""The gate: which candidate to ship, chosen on the selection windows (validation, or
out-of-fold predictions when cross-validated) from every candidate's predictions on the same
vehicles, with paired bootstrap intervals; the test split is reported, never used to choose.

The rule: the candidate with the lowest total cost ships; equal costs go to the lower log
loss, then to the simpler candidate (its registration's ``simplicity``).
A cheapest candidate that is not significantly cheaper than the runner-up (the 95% paired
interval of their difference reaches 0) still ships, as the best estimate there is, and the
verdict says so (``significant``). A promoted model (``gate.reference``) is only replaced by
a candidate that is clearly cheaper (:func:`gate_verdict`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from componentx.decisions.calibration import softmax
from componentx.decisions.evaluation import paired_comparison, split_report
from componentx.decisions.metrics import probability_metrics, total_cost
from componentx.errors import UserError


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


def _keys(frame: pd.DataFrame) -> np.ndarray:
    """Each window's vehicle as the intervals resample it: ``vehicle_key`` (one per vehicle of
    a split), or ``vehicle_id`` in predictions written before there were keys."""
    return frame["vehicle_key" if "vehicle_key" in frame else "vehicle_id"].to_numpy()


def _weights(frame: pd.DataFrame) -> np.ndarray:
    """Each window's weight towards the deployment class mix (1 where there is none)."""
    return frame["weight"].to_numpy() if "weight" in frame else np.ones(len(frame))


def weighted_cost_and_log_loss(frame: pd.DataFrame, cost_matrix: np.ndarray
                               ) -> tuple[float, float]:
    """Total cost and mean log loss of a predictions frame, each window counted its
    ``weight`` times: the deployment class mix's (equal to the plain ones on validation)."""
    y, w = frame["class_label"].to_numpy(), _weights(frame)
    cost = float((w * np.asarray(cost_matrix, dtype=float)[y, frame["predicted"]]).sum())
    likelihood = np.clip(_probabilities(frame)[np.arange(len(y)), y], 1e-12, None)
    return cost, float((-w * np.log(likelihood)).sum() / w.sum())


def _check_same_vehicles(frame: pd.DataFrame, other: pd.DataFrame, what: str) -> None:
    if not np.array_equal(frame["vehicle_id"].to_numpy(), other["vehicle_id"].to_numpy()):
        raise UserError(f"the gate compares predictions on the same vehicles, but {what} "
                        "differ (was one made on another dataset, or is a stage out of date?)")


def frame_report(frame: pd.DataFrame, cost_matrix: np.ndarray, evaluate: dict) -> dict:
    """The metrics block of a predictions frame, the same keys and numbers as the split
    blocks of ``metrics/evaluate.json`` (``evaluate`` is ``params.evaluate``)."""
    logits = frame[[c for c in frame.columns if c.startswith("logit_")]].to_numpy()
    return split_report(frame["class_label"].to_numpy(), softmax(logits), _probabilities(frame),
                        cost_matrix, evaluate["decision"], evaluate["bootstrap"],
                        evaluate["seed"], _keys(frame))


def rank_candidates(frames: dict[str, pd.DataFrame], cost_matrix: np.ndarray, n_boot: int,
                    seed: int, simplicity: dict[str, int]) -> list[dict]:
    """The candidates of ``frames`` (name: predictions on the selection windows), best first:
    total cost, then log loss, then ``simplicity`` (lower is simpler), each window weighted
    towards the deployment class mix (its ``weight``: all 1 on validation, see
    :func:`~componentx.decisions.evaluation.deployment_weights`); each with its paired
    difference to the best (cost and Brier score, candidate minus best: positive when the
    best is better)."""
    first = next(iter(frames.values()))
    y = first["class_label"].to_numpy()
    rows = []
    for name, frame in frames.items():
        _check_same_vehicles(frame, first, f"the {name} candidate's and the others' vehicles")
        cost, log_loss = weighted_cost_and_log_loss(frame, cost_matrix)
        rows.append({"name": name, "cost_total": cost, "log_loss": log_loss})
    rows.sort(key=lambda row: (row["cost_total"], row["log_loss"], simplicity[row["name"]]))
    best = frames[rows[0]["name"]]
    for row in rows:
        other = frames[row["name"]]
        row["vs_best"] = None if row is rows[0] else paired_comparison(
            y, other["predicted"].to_numpy(), best["predicted"].to_numpy(),
            _probabilities(other), _probabilities(best), cost_matrix, n_boot, seed,
            _keys(first), _weights(first))
    return rows


def gate_verdict(run: pd.DataFrame, reference: pd.DataFrame, cost_matrix: np.ndarray,
                 ece_tolerance: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """Compare two prediction tables of one split (``{split}.parquet``).

    The run passes, and replaces the reference, when on the same vehicles
    - its total cost is lower, with the whole 95% paired interval of the difference below 0;
    - its Brier score is not significantly higher (paired interval reaches 0 or below);
    - its top-label ECE is at most the reference's plus ``ece_tolerance``.
    Otherwise the reference stays: a model that is not clearly cheaper does not replace it.
    """
    _check_same_vehicles(run, reference, "the run's and the reference's vehicles")
    y = run["class_label"].to_numpy()
    probs, reference_probs = _probabilities(run), _probabilities(reference)
    paired = paired_comparison(y, run["predicted"].to_numpy(), reference["predicted"].to_numpy(),
                               probs, reference_probs, cost_matrix, n_boot, seed, _keys(run),
                               _weights(run))
    ours, theirs = probability_metrics(y, probs), probability_metrics(y, reference_probs)
    cost, brier = paired["cost_total"], paired["brier"]
    checks = {
        "cost_total": {"run": total_cost(y, run["predicted"].to_numpy(), cost_matrix),
                       "reference": total_cost(y, reference["predicted"].to_numpy(), cost_matrix),
                       "difference": cost["difference"], "ci": cost["ci"],
                       "passed": cost["ci"][1] < 0},
        "brier": {"run": ours["brier"], "reference": theirs["brier"],
                  "difference": brier["difference"], "ci": brier["ci"],
                  "passed": brier["ci"][0] <= 0},
        "ece": {"run": ours["ece"], "reference": theirs["ece"],
                "passed": ours["ece"] <= theirs["ece"] + ece_tolerance},
    }
    return {"passed": all(check["passed"] for check in checks.values()), "checks": checks}


def read_predictions(folder: Path, split: str) -> pd.DataFrame:
    path = Path(folder) / f"{split}.parquet"
    if not path.is_file():
        raise UserError(f"{path} is missing: run the stage that writes {folder} (dvc repro), "
                        "or `componentx promote` for a promoted model's")
    return pd.read_parquet(path)


def choose_candidate(reports: dict[str, dict], predictions: Path, simplicity: dict[str, int],
                     cost_matrix: np.ndarray, settings: dict, evaluate: dict) -> dict:
    """The gate's verdict (``metrics/gate.json``): the candidates of ``reports`` (their
    predictions in ``predictions/{name}``, ``simplicity`` their rank in it) ranked on
    ``settings["split"]`` (``settings`` is ``params.gate``, ``evaluate`` ``params.evaluate``),
    the chosen one and whether it is significantly cheaper than the runner-up, the check
    against a promoted reference (``gate.reference`` not ``none``), and the shipped model
    with its metrics on the selection windows and on test (keys of ``metrics/evaluate.json``'s
    split blocks). ``reports`` are the candidates' metrics files, which say how their
    selection windows were made (they must agree)."""
    selections = {name: report.get("selection") for name, report in reports.items()}
    selection = next(iter(selections.values()))
    if any(other != selection for other in selections.values()):
        raise UserError(f"the candidates were evaluated on different selection windows "
                        f"({selections}): re-run the pipeline (dvc repro)")
    split = settings["split"]
    frames = {name: read_predictions(predictions / name, split) for name in reports}
    ranking = rank_candidates(frames, cost_matrix, settings["bootstrap"], settings["seed"],
                              simplicity)
    chosen = ranking[0]["name"]
    runner_up = ranking[1]["vs_best"]["cost_total"] if len(ranking) > 1 else None
    verdict = {"split": split, "selection": selection, "candidates": ranking, "chosen": chosen,
               "significant": runner_up is not None and runner_up["ci"][0] > 0,
               "reference": None, "ship": chosen}
    shipped_folder = predictions / chosen
    if settings["reference"] != "none":
        reference = Path(settings["reference"])
        if not (reference.parent / "bundle.json").is_file():
            raise UserError(f"gate.reference {reference}: not the predictions of a promoted "
                            f"model (no {reference.parent / 'bundle.json'}); run `componentx "
                            "promote` first, or set gate.reference: none")
        check = gate_verdict(frames[chosen], read_predictions(reference, split), cost_matrix,
                             settings["ece_tolerance"], settings["bootstrap"], settings["seed"])
        verdict["reference"] = {"path": str(reference), **check}
        if not check["passed"]:
            verdict["ship"], shipped_folder = "reference", reference
    verdict["shipped"] = {"name": verdict["ship"], **{
        name: frame_report(read_predictions(shipped_folder, name), cost_matrix, evaluate)
        for name in ("validation", "test")}}
    return verdict


def format_verdict(verdict: dict) -> str:
    """The verdict for people: the ranking with paired differences, and what ships."""
    lines = [f"gate on {verdict['split']} ({verdict['selection']['mode'].replace('_', '-')}, "
             f"{verdict['selection']['windows']} windows): candidates by total cost"]
    for row in verdict["candidates"]:
        paired = row["vs_best"]
        against = "" if paired is None else (
            f"  {paired['cost_total']['difference']:+,.0f} than the best (95% paired CI "
            f"{paired['cost_total']['ci'][0]:+,.0f} to {paired['cost_total']['ci'][1]:+,.0f})")
        lines.append(f"  {row['name']:9} cost {row['cost_total']:,.0f}  log loss "
                     f"{row['log_loss']:.4f}{against}")
    lines.append(f"chosen: {verdict['chosen']} ("
                 + ("significantly cheaper than the runner-up)" if verdict["significant"] else
                    "not significantly cheaper than the runner-up: the best estimate)"))
    reference = verdict["reference"]
    if reference is not None:
        lines.append(f"against the promoted {reference['path']}: "
                     + ("clearly cheaper, it replaces it" if reference["passed"] else
                        "not clearly cheaper, the promoted model stays"))
        for name, check in reference["checks"].items():
            ci = (f"  difference {check['difference']:+.4g} (95% paired CI "
                  f"{check['ci'][0]:+.4g} to {check['ci'][1]:+.4g})" if "ci" in check else "")
            lines.append(f"  {'ok  ' if check['passed'] else 'FAIL'} {name:10} chosen "
                         f"{check['run']:.4g}  promoted {check['reference']:.4g}{ci}")
    for name, reason in verdict.get("declined", {}).items():
        lines.append(f"  {name:9} not fitted: {reason}")
    shipped = verdict["shipped"]
    lines.append(f"ships: {shipped['name']} (test, reported only: cost "
                 f"{shipped['test']['cost_total']:,.0f}, accuracy "
                 f"{shipped['test']['accuracy']:.3f})")
    return "\n".join(lines)
