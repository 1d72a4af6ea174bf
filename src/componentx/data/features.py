"""Feature transforms, streaming statistics and normalisation of the readouts.

Raw readouts are cumulative. ``transform`` chooses the model inputs: the cumulative values,
their per-time-unit increments between consecutive readouts of a vehicle, or both.
Counters go through a signed log1p; then every feature is z-scored with statistics from the
train readouts and missing values become 0 (the train mean).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from componentx.compute import dask_client, map_tasks, stat_group
from componentx.data.layout import bucket_file
from componentx.data.windowing import WINDOW_SPLITS, buckets_of, gather_rows, readout_arrays
from componentx.errors import UserError

log = logging.getLogger(__name__)
AGE_SCALE = 48.0  # time units; the age channel is (ref_time - time_step) / AGE_SCALE
HISTORY_SCALE = 240.0  # time units, about a study's length: operating time is t / HISTORY_SCALE
# Per-readout channels about the vehicle's whole history, which a window of its last readouts
# cannot see: time since its first readout and how many readouts it had so far (log1p).
HISTORY_CHANNELS = ("operating_time", "readouts_so_far")


def signed_log1p(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


def transformed_names(features: Sequence[str], transform: str) -> list[str]:
    names = []
    if transform in ("cumulative", "both"):
        names += list(features)
    if transform in ("increments", "both"):
        names += [f"{f}_rate" for f in features]
    return names


def transform_features(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                       is_counter: np.ndarray, transform: str) -> np.ndarray:
    """Transformed features (rows, F or 2F), float64 with NaN where unknown.

    The first row of each vehicle in the block has unknown increments: pass the previous
    block's last row prepended (and drop it) to carry increments across blocks.
    """
    parts = []
    log_mask = np.asarray(is_counter, dtype=bool)
    if transform in ("cumulative", "both"):
        cumulative = values.astype(np.float64, copy=True)
        cumulative[:, log_mask] = signed_log1p(cumulative[:, log_mask])
        parts.append(cumulative)
    if transform in ("increments", "both"):
        rates = np.full(values.shape, np.nan)
        same = vehicle_ids[1:] == vehicle_ids[:-1]
        dt = np.where(same, times[1:] - times[:-1], np.nan)
        rates[1:] = (values[1:] - values[:-1]) / dt[:, None]
        rates[:, log_mask] = signed_log1p(rates[:, log_mask])
        parts.append(rates)
    return np.concatenate(parts, axis=1)


@dataclass
class FeatureStats:
    """Per-feature statistics of the transformed train readouts."""

    transform: str
    source_features: list[str]
    counters: list[str]
    names: list[str]
    count: list[int]
    mean: list[float]
    std: list[float]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> FeatureStats:
        return cls(**json.loads(Path(path).read_text()))

    def is_counter(self) -> np.ndarray:
        return np.isin(self.source_features, self.counters)


@dataclass
class StatPartials:
    """Per vehicle group (:func:`~componentx.compute.stat_group`) and transformed feature:
    the count of known values, their mean and their sum of squared deviations (groups, F)."""

    groups: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray


def stat_partials(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                  is_counter: np.ndarray, transform: str, columns_at_once: int = 32
                  ) -> StatPartials:
    """:class:`StatPartials` of readouts sorted by vehicle and time (a bucket: whole
    vehicles). A group's partials depend only on its own rows, in their order, so they are
    the same whatever else the bucket holds."""
    block = transform_features(np.asarray(values), times, vehicle_ids, is_counter, transform)
    groups = stat_group(vehicle_ids)
    order = np.argsort(groups, kind="stable")
    starts = np.flatnonzero(np.r_[True, groups[order][1:] != groups[order][:-1]]) \
        if len(order) else np.zeros(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(order)])
    shape = (len(starts), block.shape[1])
    count, mean, m2 = np.zeros(shape, np.int64), np.zeros(shape), np.zeros(shape)
    for first in range(0, block.shape[1] if len(starts) else 0, columns_at_once):
        part = slice(first, first + columns_at_once)
        x = block[order, part]
        if np.isinf(x).any():
            raise UserError("the transformed train features contain inf: a readout value or "
                            "its rate is beyond float64")
        known = ~np.isnan(x)
        count[:, part] = np.add.reduceat(known, starts, axis=0)
        sums = np.add.reduceat(np.where(known, x, 0.0), starts, axis=0)
        mean[:, part] = np.where(count[:, part] > 0, sums / np.maximum(count[:, part], 1), 0.0)
        deviation = np.where(known, x - np.repeat(mean[:, part], sizes, axis=0), 0.0)
        m2[:, part] = np.add.reduceat(deviation**2, starts, axis=0)
    return StatPartials(groups[order][starts], count, mean, m2)


def merge_partials(parts: list[StatPartials]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and sum of squared deviations of everything, merged group by group in the
    order of the groups (Chan's parallel formula): the same result whatever the bucketing."""
    groups = np.concatenate([p.groups for p in parts])
    count = np.concatenate([p.count for p in parts]).astype(float)
    mean, m2 = np.concatenate([p.mean for p in parts]), np.concatenate([p.m2 for p in parts])
    total, merged_mean, merged_m2 = (np.zeros(count.shape[1]) for _ in range(3))
    for g in np.argsort(groups, kind="stable"):
        n = total + count[g]
        delta = mean[g] - merged_mean
        safe = np.maximum(n, 1)
        merged_mean = merged_mean + delta * count[g] / safe
        merged_m2 = merged_m2 + m2[g] + delta**2 * total * count[g] / safe
        total = n
    return total, merged_mean, merged_m2


def stats_from_partials(parts: list[StatPartials], features: Sequence[str],
                        counters: Sequence[str], transform: str) -> FeatureStats:
    count, mean, m2 = merge_partials(parts)
    std = np.sqrt(m2 / np.maximum(count, 1))
    std = np.where(std > 0, std, 1.0)
    return FeatureStats(transform, list(features), list(counters),
                        transformed_names(features, transform), count.astype(int).tolist(),
                        mean.tolist(), std.tolist())


def known_counters(features: Sequence[str], counters: Sequence[str]) -> list[str]:
    """``features.counters`` that the readouts have (the Component X counters on another
    dataset are nothing to log-transform: a warning names them)."""
    unknown = sorted(set(counters) - set(features))
    if unknown:
        log.warning("features.counters names %d columns the readouts do not have, ignored: %s",
                    len(unknown), unknown[:8])
    return [c for c in counters if c in set(features)]


def compute_stats(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                  features: Sequence[str], counters: Sequence[str], transform: str
                  ) -> FeatureStats:
    """Mean and standard deviation per transformed feature of readouts sorted by vehicle and
    time: partials per vehicle group, merged in group order, as the stats stage computes
    them bucket by bucket (so the result is the same whatever the bucketing)."""
    counters = known_counters(features, counters)
    parts = stat_partials(values, times, vehicle_ids, np.isin(list(features), counters),
                          transform)
    return stats_from_partials([parts], features, counters, transform)


def bucket_partials(windows: Path, bucket: int, is_counter: np.ndarray, transform: str
                    ) -> StatPartials:
    """:func:`stat_partials` of one bucket of the train readouts (a task)."""
    return stat_partials(*readout_arrays(windows, "train", bucket), is_counter, transform)


def train_stats(windows: Path, settings: dict, compute: dict) -> FeatureStats:
    """The statistics of the train readouts of the windowing stage's ``windows`` folder,
    bucket by bucket (``settings`` is ``params.features``, ``compute`` ``params.compute``)."""
    features = json.loads((windows / "features.json").read_text())
    counters = known_counters(features, settings["counters"])
    buckets = buckets_of(windows)
    with dask_client(compute, buckets) as client:
        parts = map_tasks(client, bucket_partials, [
            (windows, bucket, np.isin(features, counters), settings["transform"])
            for bucket in range(buckets)], "statistics")
    return stats_from_partials(parts, features, counters, settings["transform"])


def bucket_inputs(windows: Path, out: Path, split: str, bucket: int, stats: FeatureStats
                  ) -> None:
    """One bucket's model inputs (:func:`model_inputs`, without the padding row) into
    ``out/{split}/{bucket}.npy``, float32 (a task)."""
    values, times, ids = readout_arrays(windows, split, bucket)
    path = bucket_file(out, split, bucket, ".npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, model_inputs(values, times, ids, stats)[:-1])


def write_inputs(windows: Path, stats: FeatureStats, out: Path, compute: dict) -> None:
    """Every split's model inputs, bucket by bucket, next to the windowing stage's readouts:
    what training, evaluation and explanations read window by window."""
    buckets = buckets_of(windows)
    with dask_client(compute, buckets) as client:
        map_tasks(client, bucket_inputs, [(windows, out, split, bucket, stats)
                                          for split in WINDOW_SPLITS
                                          for bucket in range(buckets)], "model inputs")


def normalise(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
              stats: FeatureStats, block_rows: int = 8192) -> np.ndarray:
    """Transformed, z-scored float32 features with missing values at 0, block by block (small
    blocks: their temporaries are reused, not mapped and faulted in anew each time)."""
    mean = np.asarray(stats.mean)
    std = np.asarray(stats.std)
    out = np.empty((len(values), len(stats.names)), dtype=np.float32)
    for start in range(0, len(values), block_rows):  # each block sees the row before it
        stop, first = min(start + block_rows, len(values)), max(start - 1, 0)
        block = transform_features(np.asarray(values[first:stop]), times[first:stop],
                                   vehicle_ids[first:stop], stats.is_counter(),
                                   stats.transform)[start - first:]
        out[start:stop] = np.nan_to_num((block - mean) / std, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def history_channels(times: np.ndarray, vehicle_ids: np.ndarray) -> np.ndarray:
    """(rows, 2) float32: operating time since the vehicle's first readout, and log1p of the
    number of its readouts so far, at every readout (readouts sorted by vehicle and time)."""
    first = np.searchsorted(vehicle_ids, vehicle_ids, side="left")
    return np.column_stack([(times - times[first]) / HISTORY_SCALE,
                            np.log1p(np.arange(len(times)) - first + 1)]).astype(np.float32)


def model_inputs(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                 stats: FeatureStats) -> np.ndarray:
    """Every readout's model inputs but the age, with a zero padding row at the end:
    normalised features, then the history channels (float32)."""
    inputs = np.zeros((len(times) + 1, len(stats.names) + len(HISTORY_CHANNELS)), np.float32)
    inputs[:-1, :len(stats.names)] = normalise(values, times, vehicle_ids, stats)
    inputs[:-1, len(stats.names):] = history_channels(times, vehicle_ids)
    return inputs


def window_inputs(inputs: np.ndarray, times: np.ndarray, end_row: np.ndarray,
                  length: np.ndarray, ref_time: np.ndarray, size: int,
                  out: np.ndarray | None = None) -> np.ndarray:
    """(windows, size, inputs + 1) float32: each window's readouts from :func:`model_inputs`,
    left-padded, with the age before the reference time as the last channel. ``times`` has
    one entry per row of ``inputs`` (the last, the padding row's, is not used)."""
    pad = len(inputs) - 1
    rows = gather_rows(end_row, length, size, pad)
    if out is None:
        out = np.empty((*rows.shape, inputs.shape[1] + 1), dtype=np.float32)
    out[:, :, :-1] = inputs[rows]
    out[:, :, -1] = np.where(rows != pad, ref_time[:, None] - times[rows], 0.0) / AGE_SCALE
    return out


def window_input_batches(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                         end_row: np.ndarray, length: np.ndarray, ref_time: np.ndarray,
                         stats: FeatureStats, size: int, batch_size: int
                         ) -> Iterator[np.ndarray]:
    """The model inputs of windows over raw readouts (sorted by vehicle and time), as the
    inputs stage and :func:`window_inputs` make them: (batch, size, inputs + 1) float32,
    ``batch_size`` windows at a time, in order."""
    inputs = model_inputs(values, times, vehicle_ids, stats)
    padded_times = np.r_[times, 0.0]
    for start in range(0, len(end_row), batch_size):
        part = slice(start, start + batch_size)
        yield window_inputs(inputs, padded_times, end_row[part], length[part], ref_time[part],
                            size)
