"""Plots of the fleet view: lead-time distribution table and a few vehicles' risk over time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from componentx.alarms import Fleet


def lead_time_table(lead_times: dict[str, np.ndarray], horizon: float, bins: int = 12
                    ) -> pd.DataFrame:
    """Detected repairs per lead-time bin (bin centre), one column per model."""
    longest = max([horizon, *(float(v.max()) for v in lead_times.values() if len(v))])
    edges = np.linspace(0.0, longest, bins + 1)
    table = pd.DataFrame({"lead_time": np.round((edges[:-1] + edges[1:]) / 2, 3)})
    for name, values in lead_times.items():
        table[name] = np.histogram(values, edges)[0]
    return table


def trajectories_figure(path: Path, fleet: Fleet, risks: dict[str, np.ndarray],
                        thresholds: dict[str, tuple[float, float]], horizon: float,
                        repaired: int = 3, censored: int = 1, seed: int = 0) -> None:
    """Risk over time of a few vehicles (seeded choice), with each model's tau_on and tau_off,
    the danger window and the repair."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(seed)
    which = np.flatnonzero(fleet.repaired)
    chosen = [*rng.choice(which, min(repaired, len(which)), replace=False)]
    which = np.flatnonzero(~fleet.repaired.astype(bool))
    chosen += [*rng.choice(which, min(censored, len(which)), replace=False)]
    figure, axes = plt.subplots(len(chosen), 1, figsize=(9, 2.4 * len(chosen)), squeeze=False)
    for axis, vehicle in zip(axes[:, 0], sorted(chosen), strict=True):
        rows = fleet.row_vehicle == vehicle
        for name, values in risks.items():
            line, = axis.step(fleet.time[rows], values[rows], where="post",
                              label=f"risk, {name}")
            tau_on, tau_off = thresholds[name]
            axis.axhline(tau_on, color=line.get_color(), linestyle="--", linewidth=0.8,
                         label=f"tau_on, {name}")
            axis.axhline(tau_off, color=line.get_color(), linestyle=":", linewidth=0.8,
                         label=f"tau_off, {name}")
        if fleet.repaired[vehicle]:
            end = fleet.end[vehicle]
            axis.axvspan(end - horizon, end, color="grey", alpha=0.15, label="danger window")
            axis.axvline(end, color="black", linewidth=1, label="repair")
        axis.set_yscale("log")
        axis.set_ylabel("risk")
        axis.set_title(f"vehicle {fleet.vehicle[rows][0]} "
                       f"({'repaired' if fleet.repaired[vehicle] else 'censored'})", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=3, loc="upper left")
    axes[-1, 0].set_xlabel("time_step")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
