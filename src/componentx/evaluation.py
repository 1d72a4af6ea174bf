"""Turn a model's validation and test logits into calibrated decisions, metrics and plot tables.

Shared by every model stage (the sequence model and the GBDT baseline), so their metrics
files have the same shape. Nothing here is fitted on the test split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.decisions import DECISION_RULES, class_priors, decide, fit_temperature, softmax
from componentx.metrics import (
    bootstrap_intervals,
    curves_on_grid,
    decision_metrics,
    probability_metrics,
    total_cost,
)

CALIBRATIONS = ("temperature", "none")
log = logging.getLogger(__name__)


@dataclass
class Calibrator:
    """Prior correction then temperature scaling of logits, both fitted on validation."""

    log_prior_ratio: np.ndarray
    temperature: float

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits + self.log_prior_ratio[None, :], self.temperature)


def fit_calibrator(val_logits: np.ndarray, val_y: np.ndarray, train_priors: np.ndarray,
                   deployment_priors: np.ndarray | None, method: str) -> Calibrator:
    """Shift from training to deployment priors (validation's when not given), then fit T."""
    if method not in CALIBRATIONS:
        raise ValueError(f"evaluate.calibration must be one of {CALIBRATIONS}, got {method!r}")
    k = val_logits.shape[1]
    target = class_priors(val_y, k) if deployment_priors is None else np.asarray(
        deployment_priors, dtype=float)
    if target.shape != (k,) or (target <= 0).any():
        raise ValueError(f"evaluate.priors must be 'validation' or {k} positive numbers")
    ratio = np.log(target / target.sum()) - np.log(np.asarray(train_priors, dtype=float))
    temperature = fit_temperature(val_logits + ratio, val_y) if method == "temperature" else 1.0
    return Calibrator(ratio, temperature)


@dataclass
class ScoredSplit:
    """One split's labels and probabilities: the model's own and the calibrated ones."""

    y: np.ndarray
    raw_probs: np.ndarray
    probs: np.ndarray


def evaluate_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                    train_priors: np.ndarray, cost_matrix: np.ndarray, settings: dict
                    ) -> tuple[dict, dict[str, ScoredSplit]]:
    """Calibrate on validation, then score every split; ``settings`` is ``params.evaluate``.

    Only ``logits["validation"]`` and ``labels["validation"]`` fit anything.
    """
    priors = None if settings["priors"] == "validation" else settings["priors"]
    calibrator = fit_calibrator(logits["validation"], labels["validation"], train_priors,
                                priors, settings["calibration"])
    report: dict = {"temperature": calibrator.temperature}
    scored = {}
    for split, split_logits in logits.items():
        scored[split] = ScoredSplit(labels[split], softmax(split_logits),
                                    calibrator.probabilities(split_logits))
        report[split] = split_report(labels[split], scored[split].raw_probs,
                                     scored[split].probs, cost_matrix, settings["decision"],
                                     settings["bootstrap"], settings["seed"])
    return report, scored


def reliability_table(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """Top-label confidence against accuracy per confidence bin (empty bins dropped)."""
    confidence, correct = probs.max(axis=1), (probs.argmax(axis=1) == y).astype(float)
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    keep = counts > 0
    return pd.DataFrame({
        "confidence": (np.bincount(which, confidence, bins)[keep] / counts[keep]),
        "accuracy": (np.bincount(which, correct, bins)[keep] / counts[keep]),
        "count": counts[keep],
    })


def split_report(y: np.ndarray, raw_probs: np.ndarray, probs: np.ndarray,
                 cost_matrix: np.ndarray, rule: str, n_boot: int, seed: int) -> dict:
    """Metrics of one split, top level for ``rule``, with a block per decision rule.

    ``argmax`` decides on the model's own probabilities; ``expected_cost`` minimises the
    expected cost under the calibrated, prior-corrected ``probs``.
    """
    if rule not in DECISION_RULES:
        raise ValueError(f"evaluate.decision must be one of {DECISION_RULES}, got {rule!r}")
    blocks = {}
    for name, source in (("argmax", raw_probs), ("expected_cost", probs)):
        pred = decide(source, name, cost_matrix)
        blocks[name] = {**decision_metrics(y, pred, cost_matrix),
                        **bootstrap_intervals(y, pred, cost_matrix, n_boot, seed)}
    uncalibrated = probability_metrics(y, raw_probs)
    return {
        **blocks[rule],
        **probability_metrics(y, probs),
        "uncalibrated": {k: uncalibrated[k] for k in ("brier", "ece", "log_loss")},
        "cost_always_0": total_cost(y, np.zeros_like(y), cost_matrix),
        **blocks,
    }


def log_summary(model: str, split: str, report: dict) -> None:
    log.info("%s %s: cost %.0f %s (always 0: %.0f; argmax %.0f), macro-F1 %.3f, PR-AUC %.3f, "
             "ECE %.3f", model, split, report["cost_total"],
             np.round(report["cost_total_ci"]).tolist(), report["cost_always_0"],
             report["argmax"]["cost_total"], report["macro_f1"], report["pr_auc"]["macro"],
             report["ece"])


def predictions_frame(vehicle_ids: np.ndarray, y: np.ndarray, probs: np.ndarray,
                      raw_probs: np.ndarray, rule: str, cost_matrix: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"vehicle_id": vehicle_ids, "class_label": y})
    for c in range(probs.shape[1]):
        frame[f"prob_{c}"] = probs[:, c]
    frame["predicted_argmax"] = decide(raw_probs, "argmax", cost_matrix)
    frame["predicted_expected_cost"] = decide(probs, "expected_cost", cost_matrix)
    frame["predicted"] = frame[f"predicted_{rule}"]
    return frame


def write_plot_tables(plots_dir: Path, split: str, y: np.ndarray, raw_probs: np.ndarray,
                      probs: np.ndarray, predicted: np.ndarray, report: dict) -> None:
    """Small CSV tables for DVC plots: confusion, PR and ROC curves, reliability, costs."""
    for sub in ("confusion", "pr", "roc", "reliability", "cost"):
        (plots_dir / sub).mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"actual": y, "predicted": predicted}).to_csv(
        plots_dir / "confusion" / f"{split}.csv", index=False)
    pr, roc = curves_on_grid(y, probs)
    pd.DataFrame(pr).round(5).to_csv(plots_dir / "pr" / f"{split}.csv", index=False)
    pd.DataFrame(roc).round(5).to_csv(plots_dir / "roc" / f"{split}.csv", index=False)
    for name, source in (("before", raw_probs), ("after", probs)):
        reliability_table(y, source).round(5).to_csv(
            plots_dir / "reliability" / f"{split}_{name}.csv", index=False)
    pd.DataFrame({
        "decision": ["always_0", "argmax", "expected_cost"],
        "cost_total": [report["cost_always_0"], report["argmax"]["cost_total"],
                       report["expected_cost"]["cost_total"]],
    }).to_csv(plots_dir / "cost" / f"{split}.csv", index=False)


def comparison_markdown(reports: dict[str, dict], splits: tuple[str, ...] = ("validation", "test")
                        ) -> str:
    """A small markdown table comparing models' reports (same shape as metrics/evaluate.json)."""
    lines = ["| model | split | cost (95% CI) | argmax cost | always 0 | macro-F1 (95% CI) | "
             "PR-AUC | Brier | ECE |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split in splits:
        for model, report in reports.items():
            r = report[split]
            low, high = r["cost_total_ci"]
            f1_low, f1_high = r["macro_f1_ci"]
            lines.append(
                f"| {model} | {split} | {r['cost_total']:,.0f} ({low:,.0f}–{high:,.0f}) | "
                f"{r['argmax']['cost_total']:,.0f} | {r['cost_always_0']:,.0f} | "
                f"{r['macro_f1']:.3f} ({f1_low:.3f}–{f1_high:.3f}) | {r['pr_auc']['macro']:.3f} | "
                f"{r['brier']:.4f} | {r['ece']:.4f} |")
    return "\n".join(lines) + "\n"
