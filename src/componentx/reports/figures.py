"""Figures (PNG) for people and trackers that do not read DVC plots: an evaluation summary per
split, attributions of the riskiest vehicles, and fleet risk trajectories."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from componentx.decisions.evaluation import Evaluation, ScoredSplit
from componentx.decisions.metrics import curves_on_grid
from componentx.reports.tables import reliability_table, write_plot_tables


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


def trajectories_figure(path: Path, shown: pd.DataFrame, thresholds: dict[str, tuple[float, float]],
                        horizon: float) -> None:
    """Risk over time of the vehicles in ``shown`` (rows of the fleet view's trajectories:
    vehicle_id, time, repaired, end and a ``risk_{name}`` per model), with each model's
    tau_on and tau_off, the danger window and the repair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vehicles = list(shown.groupby("vehicle_id", sort=True))
    figure, axes = plt.subplots(len(vehicles), 1, figsize=(9, 2.4 * len(vehicles)),
                                squeeze=False)
    for axis, (vehicle, rows) in zip(axes[:, 0], vehicles, strict=True):
        for name, (tau_on, tau_off) in thresholds.items():
            line, = axis.step(rows["time"], rows[f"risk_{name}"], where="post",
                              label=f"risk, {name}")
            axis.axhline(tau_on, color=line.get_color(), linestyle="--", linewidth=0.8,
                         label=f"tau_on, {name}")
            axis.axhline(tau_off, color=line.get_color(), linestyle=":", linewidth=0.8,
                         label=f"tau_off, {name}")
        repaired = bool(rows["repaired"].iloc[0])
        if repaired:
            end = float(rows["end"].iloc[0])
            axis.axvspan(end - horizon, end, color="grey", alpha=0.15, label="danger window")
            axis.axvline(end, color="black", linewidth=1, label="repair")
        axis.set_yscale("log")
        axis.set_ylabel("risk")
        axis.set_title(f"vehicle {vehicle} ({'repaired' if repaired else 'censored'})",
                       fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper left")
    axes[-1, 0].set_xlabel("time_step")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def attributions_figure(path: Path, table: pd.DataFrame, vehicles: np.ndarray,
                        predicted: np.ndarray, risk: np.ndarray, risk_title: str,
                        model_title: str) -> None:
    """One bar chart per vehicle: the attributions of its top inputs (``table``, from
    :func:`componentx.candidates.explain.top_features`), titled with its decision and risk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(vehicles), 1, figsize=(9, 2.2 * len(vehicles)),
                                squeeze=False)
    for i, axis in enumerate(axes[:, 0]):
        top = table[table["vehicle_id"] == vehicles[i]].iloc[::-1]
        values = top["attribution"].to_numpy()
        axis.barh(top["feature"], values, color=np.where(values > 0, "#c0392b", "#2e86c1"))
        axis.axvline(0.0, color="grey", linewidth=0.8)
        axis.tick_params(labelsize=7)
        axis.set_title(f"{model_title}, vehicle {vehicles[i]}: predicted class {predicted[i]}, "
                       f"{risk_title} = {risk[i]:.2f}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def message_figure(path: Path, message: str) -> None:
    """A figure that only says ``message`` (where a plot has nothing to show)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(7, 1.2))
    figure.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    figure.savefig(path, dpi=90)
    plt.close(figure)


def write_evaluation_plots(folder: Path, evaluation: Evaluation,
                           frames: dict[str, pd.DataFrame]) -> None:
    """Per split of ``evaluation``: the DVC plot tables (:func:`write_plot_tables`) and the
    summary figure ``summary_{split}.png``; ``frames`` are its predictions."""
    for split, scored in evaluation.scored.items():
        predicted = frames[split]["predicted"].to_numpy()
        write_plot_tables(folder, split, scored.y, scored.raw_probs, scored.probs, predicted,
                          evaluation.report[split])
        summary_figure(folder / f"summary_{split}.png", split, scored, predicted)
