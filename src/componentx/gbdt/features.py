"""Summary features for gradient-boosted trees: what the published real-data winners use,
computed from the same windows as the sequence model and each vehicle's full history up to
the reference readout (never after it).

Features are built from the raw readouts. Histogram families are the columns named
``<family>_<bin>`` (two or more bins); every other column is a single quantity (a counter,
for Component X). A value missing at a readout is taken from the vehicle's last readout that
has it, with that readout's time, so rates stay exact across gaps.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=16)
def _layout(feature_names: tuple[str, ...], spec_names: tuple[str, ...], window_stats: bool
            ) -> tuple[dict[str, list[int]], list[str], dict[str, np.ndarray]]:
    """Where :func:`summary_features` puts each block of columns: the families, the column
    names in order, and per block the column position of each of its columns (a later block
    taking over a name an earlier one gave, as assignments to a dict would)."""
    groups = families(feature_names)
    binned = [j for members in groups.values() if len(members) > 1 for j in members]
    position: dict[str, int] = {}

    def place(names: list[str]) -> np.ndarray:
        return np.array([position.setdefault(name, len(position)) for name in names],
                        dtype=np.intp)

    blocks: dict[str, list] = {f"rate{horizon}_bins": [] for horizon in HORIZONS}
    blocks |= {"share": [], "recent_share": []}  # empty where no family has bins
    for members in groups.values():
        if len(members) > 1:
            for horizon in HORIZONS:
                blocks[f"rate{horizon}_bins"].extend(
                    place([f"rate{horizon}_{feature_names[j]}" for j in members]))
            for j in members:
                blocks["share"].extend(place([f"share_{feature_names[j]}"]))
                blocks["recent_share"].extend(place([f"recent_share_{feature_names[j]}"]))
    blocks["last"] = place([f"last_{name}" for name in feature_names])
    for family in groups:
        for horizon in HORIZONS:
            blocks.setdefault(f"rate{horizon}", []).extend(place([f"rate{horizon}_{family}"]))
        blocks.setdefault("relative_rate", []).extend(place([f"relative_rate_{family}"]))
        blocks.setdefault("missing", []).extend(place([f"missing_{family}"]))
    blocks["history"] = place(["time_since_first", "time_since_previous", "readouts_so_far"])
    if window_stats:
        blocks["window"] = place([f"window_{kind}_{name}" for kind in WINDOW_STATISTICS
                                  for name in feature_names])
    blocks["specs"] = place(list(spec_names))
    blocks["binned"] = binned
    return groups, list(position), {name: np.asarray(cols, dtype=np.intp)
                                    for name, cols in blocks.items()}


HORIZONS = ("1", "k", "all")  # the rates' anchors: the last readout, the last k, the first
WINDOW_STATISTICS = ("mean", "std", "min", "max", "argmax")


def _family_sums(block: np.ndarray, groups: dict[str, list[int]]) -> np.ndarray:
    """Each family's sum of its columns of ``block`` (rows, features), added as numpy adds a
    row of a C-ordered (rows, members) block (pairwise): (rows, families), NaN where a
    member is."""
    sums = np.empty((len(block), len(groups)), dtype=np.float64)
    single = [f for f, members in enumerate(groups.values()) if len(members) == 1]
    sums[:, single] = block[:, [members[0] for members in groups.values()
                                if len(members) == 1]] + 0.0  # a one-term sum: 0.0 + x
    for f, members in enumerate(groups.values()):
        if len(members) > 1:
            sums[:, f] = np.ascontiguousarray(block[:, members]).sum(axis=1)  # by row
    return sums


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

    Every family is computed at once (a family's readout is its first column's last
    observed one), so that one window costs about what a few do.
    """
    groups, names, blocks = _layout(tuple(feature_names), tuple(spec_names), window_stats)
    family_of = np.empty(len(feature_names), dtype=np.intp)
    for f, members in enumerate(groups.values()):
        family_of[members] = f
    columns = np.arange(len(feature_names))
    end = windows["end_row"].to_numpy() - 1  # the reference readout's row
    vehicle_start = np.searchsorted(vehicle_ids, vehicle_ids[end], side="left")
    so_far = end - vehicle_start + 1
    anchors = {"1": np.maximum(end - 1, vehicle_start), "k": end - np.minimum(so_far, k) + 1,
               "all": vehicle_start}
    # per row and family, the row of the vehicle's last observed value (-1: none yet)
    first = [members[0] for members in groups.values()]
    seen = np.where(np.isnan(values[:, first]), -1, np.arange(len(vehicle_ids))[:, None])
    np.maximum.accumulate(seen, axis=0, out=seen)
    seen[seen < np.searchsorted(vehicle_ids, vehicle_ids, side="left")[:, None]] = -1

    def at(read: np.ndarray) -> np.ndarray:  # (windows, features), NaN where ``read`` is -1
        row = read[:, family_of]
        return np.where(row >= 0, np.asarray(values[np.maximum(row, 0), columns],
                                             dtype=np.float64), np.nan)

    at_end = seen[end]
    last_value = at(at_end)
    out = np.empty((len(end), len(names)), dtype=np.float64)
    rates, binned = {}, blocks["binned"]
    for horizon, anchor in anchors.items():
        at_anchor = seen[anchor]
        usable = (at_anchor >= 0) & (at_end >= 0) & (at_anchor < at_end)
        dt = np.where(usable, times[np.maximum(at_end, 0)] - times[np.maximum(at_anchor, 0)],
                      np.nan)
        increase = np.where(usable[:, family_of], last_value - at(at_anchor), np.nan)
        increased = _family_sums(increase, groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates[horizon] = increased / dt
            out[:, blocks[f"rate{horizon}_bins"]] = increase[:, binned] / dt[:, family_of[
                binned]]
            if horizon == "k":  # histograms: each bin's share, lifetime and recent
                share = last_value[:, binned] / _family_sums(last_value, groups)[
                    :, family_of[binned]]
                out[:, blocks["share"]] = share
                out[:, blocks["recent_share"]] = increase[:, binned] / increased[
                    :, family_of[binned]] - share
    out[:, blocks["last"]] = last_value
    for horizon in HORIZONS:
        out[:, blocks[f"rate{horizon}"]] = rates[horizon]
    out[:, blocks["relative_rate"]] = signed_log1p(rates["k"]) - signed_log1p(rates["all"])
    out[:, blocks["missing"]] = np.isnan(np.asarray(values[end][:, first], dtype=np.float64))
    out[:, blocks["history"]] = np.column_stack([
        times[end] - times[vehicle_start],
        np.where(so_far > 1, times[end] - times[anchors["1"]], np.nan), so_far])
    if window_stats:
        out[:, blocks["window"]] = window_statistics(values, windows, feature_names)
    out[:, blocks["specs"]] = specs
    return pd.DataFrame(out, columns=names, copy=False)


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
                      ) -> np.ndarray:
    """Per feature, over each window's readouts: mean, standard deviation, minimum, maximum
    and where the maximum is (0 at the window's first readout, 1 at its last):
    (windows, statistics x features), by statistic (:data:`WINDOW_STATISTICS`), then feature.
    For readouts that are levels rather than cumulative counts, where the shape of the window
    matters."""
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
    return np.concatenate([stats[kind] for kind in WINDOW_STATISTICS], axis=1).reshape(
        len(end), len(WINDOW_STATISTICS) * len(feature_names))


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
