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

from componentx.calibration import Calibrator, crossfit_probabilities, fit_calibrator
from componentx.decisions import DECISION_RULES, decide, softmax
from componentx.metrics import (
    bootstrap_intervals,
    curves_on_grid,
    decision_metrics,
    paired_interval,
    probability_metrics,
    total_cost,
    vehicle_costs,
)

log = logging.getLogger(__name__)


@dataclass
class ScoredSplit:
    """One split's labels, raw logits and probabilities: the model's own and calibrated."""

    y: np.ndarray
    logits: np.ndarray
    raw_probs: np.ndarray
    probs: np.ndarray


def evaluate_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                    train_priors: np.ndarray, cost_matrix: np.ndarray, settings: dict,
                    method: str | None = None
                    ) -> tuple[dict, dict[str, ScoredSplit], Calibrator]:
    """Calibrate on validation, then score every split; ``settings`` is ``params.evaluate``
    (``method`` overrides its calibration, see :func:`calibration_method`).

    Only ``logits["validation"]`` and ``labels["validation"]`` fit anything. With
    ``settings["folds"]`` > 1 the validation split is scored with cross-fitted calibration.
    """
    method = method or settings["calibration"]
    priors = None if settings["priors"] == "validation" else settings["priors"]
    calibrator = fit_calibrator(logits["validation"], labels["validation"], train_priors,
                                priors, method)
    report: dict = {"calibration": calibrator.to_dict()}
    scored = {}
    for split, split_logits in logits.items():
        if split == "validation" and settings["folds"] > 1:
            probs = crossfit_probabilities(split_logits, labels[split], train_priors, priors,
                                           method, settings["folds"], settings["seed"])
        else:
            probs = calibrator.probabilities(split_logits)
        scored[split] = ScoredSplit(labels[split], split_logits, softmax(split_logits), probs)
        report[split] = split_report(labels[split], scored[split].raw_probs,
                                     scored[split].probs, cost_matrix, settings["decision"],
                                     settings["bootstrap"], settings["seed"])
    return report, scored, calibrator


def paired_comparison(y: np.ndarray, pred: np.ndarray, other_pred: np.ndarray,
                      probs: np.ndarray, other_probs: np.ndarray, cost_matrix: np.ndarray,
                      n_boot: int, seed: int) -> dict:
    """This model minus another on the same vehicles: total cost and Brier score, with
    paired bootstrap intervals (negative: this model is better)."""
    onehot = np.eye(probs.shape[1])[y]
    return {
        "cost_total": paired_interval(vehicle_costs(y, pred, cost_matrix),
                                      vehicle_costs(y, other_pred, cost_matrix), n_boot, seed),
        "brier": paired_interval(((probs - onehot) ** 2).sum(axis=1),
                                 ((other_probs - onehot) ** 2).sum(axis=1), n_boot, seed,
                                 reduce="mean"),
    }


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
        "uncalibrated": {k: uncalibrated[k] for k in ("brier", "ece", "log_loss")}
        | {"classwise_ece": uncalibrated["classwise_ece"]["macro"]},
        "cost_always_0": total_cost(y, np.zeros_like(y), cost_matrix),
        **blocks,
    }


def log_summary(model: str, split: str, report: dict) -> None:
    log.info("%s %s: cost %.0f %s (always 0: %.0f; argmax %.0f), macro-F1 %.3f, failure "
             "PR-AUC %.3f, ECE %.3f (classwise %.4f)", model, split, report["cost_total"],
             np.round(report["cost_total_ci"]).tolist(), report["cost_always_0"],
             report["argmax"]["cost_total"], report["macro_f1"], report["pr_auc"]["macro"],
             report["ece"], report["classwise_ece"]["macro"])


def predictions_frame(vehicle_ids: np.ndarray, scored: ScoredSplit, rule: str,
                      cost_matrix: np.ndarray) -> pd.DataFrame:
    """One row per vehicle: label, raw logits, calibrated probabilities and decisions."""
    frame = pd.DataFrame({"vehicle_id": vehicle_ids, "class_label": scored.y})
    for c in range(scored.probs.shape[1]):
        frame[f"logit_{c}"] = scored.logits[:, c]
    probs = scored.probs
    for c in range(probs.shape[1]):
        frame[f"prob_{c}"] = probs[:, c]
    frame["predicted_argmax"] = decide(scored.raw_probs, "argmax", cost_matrix)
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


def comparison_markdown(reports: dict[str, dict], paired: dict[str, dict] | None = None,
                        splits: tuple[str, ...] = ("validation", "test")) -> str:
    """Markdown tables comparing models' reports (the shape of metrics/evaluate.json), and
    the paired differences of the first model against the second, per split."""
    lines = ["| model | split | cost (95% CI) | argmax cost | always 0 | macro-F1 (95% CI) | "
             "failure PR-AUC | Brier | ECE | classwise ECE |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split in splits:
        for model, report in reports.items():
            r = report[split]
            low, high = r["cost_total_ci"]
            f1_low, f1_high = r["macro_f1_ci"]
            lines.append(
                f"| {model} | {split} | {r['cost_total']:,.0f} ({low:,.0f}–{high:,.0f}) | "
                f"{r['argmax']['cost_total']:,.0f} | {r['cost_always_0']:,.0f} | "
                f"{r['macro_f1']:.3f} ({f1_low:.3f}–{f1_high:.3f}) | {r['pr_auc']['macro']:.3f} | "
                f"{r['brier']:.4f} | {r['ece']:.4f} | {r['classwise_ece']['macro']:.4f} |")
    if paired:
        first, second = list(reports)[:2]
        lines += ["", f"Paired on the same vehicles, {first} minus {second} (negative: "
                  f"{first} better; 95% paired bootstrap interval):", "",
                  "| split | cost difference (95% CI) | share of resamples where "
                  f"{first} is cheaper | Brier difference (95% CI) |", "| --- | --- | --- | --- |"]
        for split in splits:
            cost, brier = paired[split]["cost_total"], paired[split]["brier"]
            lines.append(f"| {split} | {cost['difference']:+,.0f} ({cost['ci'][0]:+,.0f} to "
                         f"{cost['ci'][1]:+,.0f}) | {cost['share_first_lower']:.2f} | "
                         f"{brier['difference']:+.4f} ({brier['ci'][0]:+.4f} to "
                         f"{brier['ci'][1]:+.4f}) |")
    return "\n".join(lines) + "\n"


def summary_figure(path: Path, split: str, scored: ScoredSplit, predicted: np.ndarray) -> None:
    """One PNG per split, for people and trackers that do not read DVC plots: the confusion
    matrix, precision-recall of the failure classes, and reliability before/after calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = scored.probs.shape[1]
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(13, 4))
    counts = np.bincount(scored.y * k + predicted, minlength=k * k).reshape(k, k)
    left.imshow(np.log1p(counts), cmap="Blues")
    for (actual, guess), n in np.ndenumerate(counts):
        left.text(guess, actual, str(n), ha="center", va="center", fontsize=8)
    left.set(xlabel="predicted", ylabel="actual", title=f"confusion, {split}",
             xticks=range(k), yticks=range(k))
    pr, _ = curves_on_grid(scored.y, scored.probs)
    for name, curve in pr.items():
        if name not in ("recall", "class_0"):
            middle.plot(pr["recall"], curve, label=name)
    middle.set(xlabel="recall", ylabel="precision", title="precision-recall (one vs rest)")
    middle.legend(fontsize=8)
    for label, source in (("before", scored.raw_probs), ("after", scored.probs)):
        table = reliability_table(scored.y, source)
        right.plot(table["confidence"], table["accuracy"], marker="o", label=label)
    right.plot([0, 1], [0, 1], color="grey", linestyle=":")
    right.set(xlabel="confidence", ylabel="accuracy", title="reliability (top label)")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
