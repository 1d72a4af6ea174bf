"""Summary features for gradient-boosted trees: what the published real-data winners use,
computed from the same windows as the sequence model and each vehicle's full history up to
the reference readout (never after it).

Features are built from the raw readouts. Histogram families are the columns named
``<family>_<bin>`` (two or more bins); every other column is a single quantity (a counter,
for Component X). A value missing at a readout is taken from the vehicle's last readout that
has it, with that readout's time, so rates stay exact across gaps.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.compute import map_tasks
from componentx.data.features import signed_log1p
from componentx.data.windowing import buckets_of, gather_rows, readout_arrays

log = logging.getLogger(__name__)


def families(feature_names: Sequence[str]) -> dict[str, list[int]]:
    """Column indices per family: histograms (``name_<bin>``, two or more columns) keyed by
    ``name``, and single columns keyed by their own name."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(feature_names):
        match = re.fullmatch(r"(.+)_(\d+)", name)
        groups.setdefault(match.group(1) if match else name, []).append(j)
    return {family if len(members) > 1 else feature_names[members[0]]: members
            for family, members in groups.items()}


def _take(values: np.ndarray, rows: np.ndarray, members: list[int]) -> np.ndarray:
    """values[rows, members] as float64, NaN where ``rows`` is -1."""
    block = np.asarray(values[np.ix_(np.maximum(rows, 0), members)], dtype=np.float64)
    return np.where(rows[:, None] >= 0, block, np.nan)


def _last_observed(values: np.ndarray, vehicle_ids: np.ndarray, column: int) -> np.ndarray:
    """Per row, the row of the same vehicle's last non-missing value of ``column`` at or
    before it (-1 where there is none)."""
    rows = np.arange(len(vehicle_ids))
    observed = np.where(~np.isnan(values[:, column]), rows, -1)
    last = np.maximum.accumulate(observed)
    vehicle_start = np.searchsorted(vehicle_ids, vehicle_ids, side="left")
    return np.where(last >= vehicle_start, last, -1)


def summary_features(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                     windows: pd.DataFrame, feature_names: list[str], k: int,
                     specs: np.ndarray, spec_names: list[str], window_stats: bool = False
                     ) -> pd.DataFrame:
    """One row per window (reference readout = the window's last readout).

    - ``last_*``: the last known value of every feature;
    - ``rate{1,k,all}_*``: increase per time unit of every single quantity and histogram
      total over the last readout, the last ``k`` readouts and the whole history, and
      ``relative_rate_*``: the recent rate against the vehicle's own lifetime rate;
    - ``share_*``: each histogram bin's share of its family, and ``recent_share_*``: the
      share of the last ``k`` readouts' increase minus the lifetime share;
    - ``missing_*``: the family is missing at the reference readout; time since the first
      readout, since the previous one, readouts so far; the specifications as categories;
    - with ``window_stats``, :func:`window_statistics` of the raw values.
    """
    end = windows["end_row"].to_numpy() - 1  # the reference readout's row
    vehicle_start = np.searchsorted(vehicle_ids, vehicle_ids[end], side="left")
    so_far = end - vehicle_start + 1
    anchors = {"1": np.maximum(end - 1, vehicle_start), "k": end - np.minimum(so_far, k) + 1,
               "all": vehicle_start}
    groups = families(feature_names)
    columns: dict[str, np.ndarray] = {}
    last_value = np.full((len(end), len(feature_names)), np.nan)
    rates: dict[str, dict[str, np.ndarray]] = {}
    increases: dict[str, np.ndarray] = {}
    for family, members in groups.items():
        seen = _last_observed(values, vehicle_ids, members[0])
        at_end = seen[end]
        block_end = _take(values, at_end, members)
        last_value[:, members] = block_end
        total_end = block_end.sum(axis=1)
        rates[family] = {}
        for horizon, anchor in anchors.items():
            at_anchor = seen[anchor]
            usable = (at_anchor >= 0) & (at_end >= 0) & (at_anchor < at_end)
            block_anchor = _take(values, at_anchor, members)
            dt = np.where(usable, times[np.maximum(at_end, 0)] - times[np.maximum(at_anchor, 0)],
                          np.nan)
            increase = np.where(usable[:, None], block_end - block_anchor, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                rates[family][horizon] = increase.sum(axis=1) / dt
                if len(members) > 1:  # every bin's own rate too
                    for i, j in enumerate(members):
                        columns[f"rate{horizon}_{feature_names[j]}"] = increase[:, i] / dt
            if horizon == "k" and len(members) > 1:
                increases[family] = increase
        if len(members) > 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                share = block_end / total_end[:, None]
                recent = increases[family] / increases[family].sum(axis=1, keepdims=True)
            for i, j in enumerate(members):
                columns[f"share_{feature_names[j]}"] = share[:, i]
                columns[f"recent_share_{feature_names[j]}"] = recent[:, i] - share[:, i]
    for j, name in enumerate(feature_names):
        columns[f"last_{name}"] = last_value[:, j]
    for family, by_horizon in rates.items():
        for horizon, rate in by_horizon.items():
            columns[f"rate{horizon}_{family}"] = rate
        columns[f"relative_rate_{family}"] = (signed_log1p(by_horizon["k"])
                                              - signed_log1p(by_horizon["all"]))
        columns[f"missing_{family}"] = np.isnan(
            _take(values, end, groups[family][:1])[:, 0]).astype(np.int8)
    columns["time_since_first"] = times[end] - times[vehicle_start]
    columns["time_since_previous"] = np.where(so_far > 1, times[end] - times[anchors["1"]],
                                              np.nan)
    columns["readouts_so_far"] = so_far
    if window_stats:
        columns |= window_statistics(values, windows, feature_names)
    for j, name in enumerate(spec_names):
        columns[name] = specs[:, j]
    # one float64 block: cheap to build for one window as for thousands
    return pd.DataFrame(np.column_stack([np.asarray(c, dtype=np.float64) for c in
                                         columns.values()]).reshape(len(end), len(columns)),
                        columns=list(columns), copy=False)


def step_counts(values: np.ndarray, vehicle_ids: np.ndarray) -> tuple[int, int]:
    """Observed steps between a vehicle's consecutive readouts (every feature), and how many
    of them do not decrease."""
    same = vehicle_ids[1:] == vehicle_ids[:-1]
    steps = np.asarray(values[1:], dtype=np.float64)[same] - np.asarray(
        values[:-1], dtype=np.float64)[same]
    observed = ~np.isnan(steps)
    return int(observed.sum()), int((steps[observed] >= 0).sum())


def is_cumulative(observed: int, non_decreasing: int, threshold: float = 0.95) -> bool:
    """Whether readouts look cumulative (counters, histograms): at least ``threshold`` of the
    observed steps (:func:`step_counts`) do not decrease."""
    return bool(observed and non_decreasing >= threshold * observed)


def window_statistics(values: np.ndarray, windows: pd.DataFrame, feature_names: list[str]
                      ) -> dict[str, np.ndarray]:
    """Per feature, over each window's readouts: mean, standard deviation, minimum, maximum
    and where the maximum is (0 at the window's first readout, 1 at its last). For readouts
    that are levels rather than cumulative counts, where the shape of the window matters."""
    end, length = windows["end_row"].to_numpy(), windows["length"].to_numpy()
    size = int(length.max()) if len(length) else 1
    rows = gather_rows(end, length, size, pad_row=len(values))
    padded = np.concatenate([np.asarray(values, dtype=np.float64),
                             np.full((1, values.shape[1]), np.nan)])
    block = padded[rows]  # (windows, size, features), NaN outside the window
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        stats = {"mean": np.nanmean(block, axis=1), "std": np.nanstd(block, axis=1),
                 "min": np.nanmin(block, axis=1), "max": np.nanmax(block, axis=1)}
    where = np.argmax(np.where(np.isnan(block), -np.inf, block), axis=1)  # position in window
    first = size - length
    stats["argmax"] = np.where(np.isnan(stats["max"]), np.nan, (where - first[:, None]) / (
        np.maximum(length, 2)[:, None] - 1))
    return {f"window_{kind}_{name}": values_[:, j] for kind, values_ in stats.items()
            for j, name in enumerate(feature_names)}


def bucket_steps(windows: Path, bucket: int) -> tuple[int, int]:
    """:func:`step_counts` of one bucket of the train readouts (a task)."""
    values, _, ids = readout_arrays(windows, "train", bucket)
    return step_counts(values, ids)


def use_window_stats(setting: bool | str, windows: Path, client: object) -> bool:
    """``gbdt.window_stats``; with ``auto``, on when the train readouts of the windowing
    stage's ``windows`` folder are not cumulative (levels, where a window's shape matters)."""
    if setting != "auto":
        return bool(setting)
    counts = map_tasks(client, bucket_steps, [(windows, b) for b in range(buckets_of(windows))],
                       "readout steps")
    cumulative = is_cumulative(*np.sum(counts, axis=0))
    log.info("gbdt.window_stats auto: the readouts look %s, window statistics %s",
             "cumulative" if cumulative else "like levels", "off" if cumulative else "on")
    return not cumulative
