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


def candidates_markdown(verdict: dict, reports: dict[str, dict], titles: dict[str, str]
                        ) -> str:
    """Markdown tables of the gate's candidates side by side (``reports``: their metrics
    files, ``titles``: their names for people) in the gate's order, and each one's paired
    difference to the chosen candidate on the selection windows."""
    selection = verdict["selection"]
    folds = f", {selection['folds']} folds" if selection["folds"] else ""
    lines = [f"Selection: {selection['mode'].replace('_', ' ')} ({selection['windows']} "
             f"windows{folds}); "
             "test is reported, never used to choose.", "",
             "| candidate | split | cost (95% CI) | accuracy | macro-F1 (95% CI) | "
             "failure PR-AUC | Brier | ECE | log loss |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for split in ("validation", "test"):
        for row in verdict["candidates"]:
            r = reports[row["name"]][split]
            low, high = r["cost_total_ci"]
            f1_low, f1_high = r["macro_f1_ci"]
            lines.append(
                f"| {titles[row['name']]} | {split} | {r['cost_total']:,.0f} ({low:,.0f}–"
                f"{high:,.0f}) | {r['accuracy']:.3f} | {r['macro_f1']:.3f} ({f1_low:.3f}–"
                f"{f1_high:.3f}) | {r['pr_auc']['macro']:.3f} | {r['brier']:.4f} | "
                f"{r['ece']:.4f} | {r['log_loss']:.4f} |")
    chosen = titles[verdict["chosen"]]
    lines += ["", f"Paired on the same vehicles ({verdict['split']}), each candidate minus "
              f"{chosen} (positive: {chosen} is cheaper; 95% paired bootstrap interval):", "",
              "| candidate | cost difference (95% CI) | share of resamples where it is cheaper "
              "| Brier difference (95% CI) |", "| --- | --- | --- | --- |"]
    for row in verdict["candidates"][1:]:
        cost, brier = row["vs_best"]["cost_total"], row["vs_best"]["brier"]
        lines.append(f"| {titles[row['name']]} | {cost['difference']:+,.0f} ({cost['ci'][0]:+,.0f}"
                     f" to {cost['ci'][1]:+,.0f}) | {cost['share_first_lower']:.2f} | "
                     f"{brier['difference']:+.4f} ({brier['ci'][0]:+.4f} to "
                     f"{brier['ci'][1]:+.4f}) |")
    shipped = verdict["shipped"]["name"]
    lines += ["", f"Chosen: {chosen}, "
              + ("significantly cheaper than the runner-up." if verdict["significant"] else
                 "not significantly cheaper than the runner-up (the best estimate).")
              + f" Ships: {titles.get(shipped, 'the promoted model')}."]
    lines += [f"Not fitted: {name} ({reason})." for name, reason in
              verdict.get("declined", {}).items()]
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
