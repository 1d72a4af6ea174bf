"""Promotion gate: should the run's model replace a reference (the baseline, or a promoted
model)? Decided on validation by default, from both models' predictions on the same
vehicles, with paired bootstrap intervals; the test split is reported, never used to choose.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.evaluation import paired_comparison
from componentx.metrics import probability_metrics, total_cost
from componentx.runtime import atomic_dir


def _probabilities(frame: pd.DataFrame) -> np.ndarray:
    return frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()


def gate_verdict(run: pd.DataFrame, reference: pd.DataFrame, cost_matrix: np.ndarray,
                 ece_tolerance: float, n_boot: int = 1000, seed: int = 0) -> dict:
    """Compare two prediction tables of one split (``data/predictions/{split}.parquet``).

    The run passes, and is the model to ship, when on the same vehicles
    - its total cost is lower, with the whole 95% paired interval of the difference below 0;
    - its Brier score is not significantly higher (paired interval reaches 0 or below);
    - its top-label ECE is at most the reference's plus ``ece_tolerance``.
    Otherwise the reference stays: a model that is not clearly cheaper does not replace it.
    """
    if not np.array_equal(run["vehicle_id"].to_numpy(), reference["vehicle_id"].to_numpy()):
        raise ValueError("the gate compares predictions on the same vehicles, but the run's and "
                         "the reference's vehicles differ (was the reference made on another "
                         "dataset?)")
    y = run["class_label"].to_numpy()
    probs, reference_probs = _probabilities(run), _probabilities(reference)
    paired = paired_comparison(y, run["predicted"].to_numpy(), reference["predicted"].to_numpy(),
                               probs, reference_probs, cost_matrix, n_boot, seed)
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
    passed = all(check["passed"] for check in checks.values())
    return {"passed": passed, "ship": "run" if passed else "reference", "checks": checks,
            "failure_pr_auc": {"run": ours["pr_auc"]["macro"],
                               "reference": theirs["pr_auc"]["macro"]}}


def format_verdict(verdict: dict) -> str:
    lines = [f"gate {'PASSED' if verdict['passed'] else 'FAILED'}: the {verdict['run']} "
             f"against {verdict['reference']} on {verdict['split']}; ship the "
             f"{verdict['run'] if verdict['ship'] == 'run' else 'reference'}"]
    for name, check in verdict["checks"].items():
        paired = (f"  difference {check['difference']:+.4g} (95% paired CI {check['ci'][0]:+.4g}"
                  f" to {check['ci'][1]:+.4g})" if "ci" in check else "")
        lines.append(f"  {'ok  ' if check['passed'] else 'FAIL'} {name:10} run "
                     f"{check['run']:.4g}  reference {check['reference']:.4g}{paired}")
    return "\n".join(lines)


def promote(bundle: Path, gate: Path, target: Path, force: bool = False) -> str:
    """Copy the bundle the gate ships, with that model's predictions, to ``target``
    (atomically); ``--force`` promotes the sequence model's bundle whatever the gate said.
    Returns the promoted model's kind."""
    bundle, gate = Path(bundle), Path(gate)
    verdict = json.loads(gate.read_text())
    if force:
        bundle = bundle.parent / "bundles" / "sequence"
    kind = json.loads((bundle / "bundle.json").read_text())["kind"]
    if Path(target).resolve() == Path(verdict["reference"]).resolve().parent and not force \
            and verdict["ship"] == "reference":
        raise ValueError(f"{gate}: the gate keeps {target}/ (the run is not clearly cheaper); "
                         "nothing to promote (--force promotes the run anyway)")
    predictions = Path("data/predictions" if kind == "sequence" else "data/baseline_predictions")
    with atomic_dir(target) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        shutil.copytree(predictions, tmp / "predictions")
        shutil.copy2(gate, tmp / "gate.json")
    return kind
