"""Promotion gate: should the run's model replace a reference (the baseline, or a promoted
model)? Decided on validation by default, from both models' predictions on the same
vehicles, with paired bootstrap intervals; the test split is reported, never used to choose.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from componentx.data.layout import DatasetSummary
from componentx.decisions.evaluation import paired_comparison
from componentx.decisions.metrics import check_cost_matrix, probability_metrics, total_cost
from componentx.errors import UserError


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
        raise UserError("the gate compares predictions on the same vehicles, but the run's and "
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


def gate_against_reference(run: Path, reference: Path, ingested: Path, settings: dict,
                           cost_matrix: list | str) -> dict:
    """:func:`gate_verdict` of the run's predictions (``run/{split}.parquet``) against the
    reference's on ``settings["split"]`` (``settings`` is ``params.gate``), with what was
    compared."""
    split = settings["split"]
    table = reference / f"{split}.parquet"
    if not table.exists():
        raise UserError(f"gate.reference {reference} has no {split}.parquet (use the "
                        "baseline's data/baseline_predictions, or promote a run with "
                        "`componentx promote` and use promoted/predictions)")
    classes = DatasetSummary.load(ingested / "schema.json").num_classes
    verdict = gate_verdict(pd.read_parquet(run / f"{split}.parquet"), pd.read_parquet(table),
                           check_cost_matrix(cost_matrix, classes), settings["ece_tolerance"],
                           settings["bootstrap"], settings["seed"])
    verdict.update(run="sequence model", reference=str(reference), split=split)
    return verdict
