"""Small tables for people and for ``dvc plots``: plot tables (curves on a grid, never one row
per window), model comparisons in markdown, the fleet's lead times."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from componentx.decisions.evaluation import Evaluation
from componentx.decisions.metrics import curves_on_grid


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


def lead_time_table(lead_times: dict[str, np.ndarray], horizon: float, bins: int = 12
                    ) -> pd.DataFrame:
    """Detected repairs per lead-time bin (bin centre), one column per model."""
    longest = max([horizon, *(float(v.max()) for v in lead_times.values() if len(v))])
    edges = np.linspace(0.0, longest, bins + 1)
    table = pd.DataFrame({"lead_time": np.round((edges[:-1] + edges[1:]) / 2, 3)})
    for name, values in lead_times.items():
        table[name] = np.histogram(values, edges)[0]
    return table


def write_predictions(folder: Path, evaluation: Evaluation) -> dict[str, pd.DataFrame]:
    """``folder/{split}.parquet``: one row per window with labels, logits, calibrated
    probabilities and decisions (:func:`~componentx.decisions.evaluation.predictions_frame`)."""
    frames = {split: evaluation.predictions(split) for split in evaluation.scored}
    for split, frame in frames.items():
        frame.to_parquet(Path(folder) / f"{split}.parquet", index=False)
    return frames
