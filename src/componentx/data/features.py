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

from componentx.data.windowing import gather_rows
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


def _transformed_blocks(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                        is_counter: np.ndarray, transform: str, block_rows: int
                        ) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, stop, transformed rows) per block; each block sees the previous block's last
    row, so increments carry across block boundaries."""
    for start in range(0, len(values), block_rows):
        stop = min(start + block_rows, len(values))
        first = max(start - 1, 0)
        block = transform_features(np.asarray(values[first:stop]), times[first:stop],
                                   vehicle_ids[first:stop], is_counter, transform)
        yield start, stop, block[start - first:]


def compute_stats(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                  features: Sequence[str], counters: Sequence[str], transform: str,
                  block_rows: int = 65536) -> FeatureStats:
    """Mean and standard deviation per transformed feature, in one pass over row blocks.

    ``values`` may be a memory map: only one block is in memory at a time. Blocks are merged
    with Chan's parallel formula, so the result matches a computation on the whole table.
    """
    unknown = sorted(set(counters) - set(features))
    if unknown:  # the Component X counters on another dataset: nothing to log-transform
        log.warning("features.counters names %d columns the readouts do not have, ignored: %s",
                    len(unknown), unknown[:8])
    counters = [c for c in counters if c in set(features)]
    names = transformed_names(features, transform)
    is_counter = np.isin(list(features), list(counters))
    count = np.zeros(len(names))
    mean = np.zeros(len(names))
    m2 = np.zeros(len(names))
    for _, _, block in _transformed_blocks(values, times, vehicle_ids, is_counter, transform,
                                           block_rows):
        if not np.isfinite(block[~np.isnan(block)]).all():
            raise UserError("the transformed train features contain inf: a readout value or "
                            "its rate is beyond float64")
        n_b = (~np.isnan(block)).sum(axis=0)
        mean_b = np.where(n_b > 0, np.nansum(block, axis=0) / np.maximum(n_b, 1), 0.0)
        m2_b = np.nansum((block - mean_b) ** 2, axis=0)
        total = count + n_b
        delta = mean_b - mean
        safe = np.maximum(total, 1)
        mean = mean + delta * n_b / safe
        m2 = m2 + m2_b + delta**2 * count * n_b / safe
        count = total
    std = np.sqrt(m2 / np.maximum(count, 1))
    std = np.where(std > 0, std, 1.0)
    return FeatureStats(transform, list(features), list(counters), names,
                        count.astype(int).tolist(), mean.tolist(), std.tolist())


def train_stats(windows: Path, settings: dict) -> FeatureStats:
    """:func:`compute_stats` of the train readouts of the windowing stage's ``windows``
    folder; ``settings`` is ``params.features``."""
    return compute_stats(np.load(windows / "train_values.npy", mmap_mode="r"),
                         np.load(windows / "train_time.npy"),
                         np.load(windows / "train_vehicle.npy"),
                         json.loads((windows / "features.json").read_text()),
                         settings["counters"], settings["transform"])


def normalise(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
              stats: FeatureStats, block_rows: int = 262144) -> np.ndarray:
    """Transformed, z-scored float32 features with missing values at 0, block by block."""
    mean = np.asarray(stats.mean)
    std = np.asarray(stats.std)
    out = np.empty((len(values), len(stats.names)), dtype=np.float32)
    blocks = _transformed_blocks(values, times, vehicle_ids, stats.is_counter(), stats.transform,
                                 block_rows)
    for start, stop, block in blocks:
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
