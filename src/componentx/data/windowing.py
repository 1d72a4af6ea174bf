"""Windows over the readouts, stored as an index into the sorted readout table.

A window is the last ``size`` readouts of a vehicle at or before a reference time. Windows
overlap heavily, so they are never materialised on disk: each is described by the row just
after its last readout (``end_row``) and its true length; :func:`gather_rows` turns a batch
of windows into row indices, left-padded with a padding row.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from componentx.data.layout import SPLITS, DatasetSummary

log = logging.getLogger(__name__)
METADATA_COLUMNS = ["vehicle_id", "ref_time", "class_label", "end_row", "length"]


def window_index(vehicle_ids: np.ndarray, times: np.ndarray, label_vehicles: np.ndarray,
                 ref_times: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """End row (exclusive) and true length of every window, vectorised with one search.

    ``vehicle_ids``/``times`` are sorted by vehicle then time. Readouts at or before the
    reference time belong to the window; at most ``size`` of them are kept.
    """
    vehicles, starts = np.unique(vehicle_ids, return_index=True)
    ends = np.r_[starts[1:], len(vehicle_ids)]
    dense = np.searchsorted(vehicles, label_vehicles)
    unknown = (dense >= len(vehicles)) | (vehicles[np.minimum(dense, len(vehicles) - 1)]
                                          != label_vehicles)
    if unknown.any():
        raise ValueError(f"label for vehicle {label_vehicles[unknown][0]} which has no readouts")
    origin = times.min() if len(times) else 0.0
    extent = np.ptp(times) if len(times) else 0.0  # times - origin lies in [0, extent]
    span = extent + 1.0
    row_vehicle = np.repeat(np.arange(len(vehicles)), ends - starts)
    key = row_vehicle * span + (times - origin)
    # The same arithmetic as the keys (ref - origin), so a reference at a readout's time never
    # rounds below it.
    label_key = dense * span + np.minimum(ref_times - origin, extent)
    end = np.searchsorted(key, label_key, side="right")
    end = np.clip(end, starts[dense], ends[dense])
    length = np.minimum(end - starts[dense], size)
    return end.astype(np.int64), length.astype(np.int64)


def build_windows(vehicle_ids: np.ndarray, times: np.ndarray, labels: pd.DataFrame,
                  size: int) -> pd.DataFrame:
    """Window metadata for every label; labels with no readout before them are dropped."""
    end, length = window_index(vehicle_ids, times, labels["vehicle_id"].to_numpy(),
                               labels["ref_time"].to_numpy(), size)
    meta = labels[["vehicle_id", "ref_time", "class_label"]].copy()
    meta["end_row"], meta["length"] = end, length
    return meta[meta["length"] > 0].reset_index(drop=True)


def gather_rows(end_row: np.ndarray, length: np.ndarray, size: int, pad_row: int) -> np.ndarray:
    """Row indices (batch, size) of a batch of windows, left-padded with ``pad_row``."""
    offsets = np.arange(size - 1, -1, -1)
    rows = end_row[:, None] - 1 - offsets[None, :]
    return np.where(offsets[None, :] < length[:, None], rows, pad_row)


def window_splits(ingested: Path, labels: Path, out: Path, size: int) -> None:
    """Write, per split, the readouts as memory-mappable arrays (``{split}_values.npy``,
    ``_time.npy``, ``_vehicle.npy``) and the window index of its labels
    (``{split}_windows.parquet``), and ``features.json``. The fleet holdout's readouts are
    written apart as the split ``fleet``, never among train's."""
    summary = DatasetSummary.load(ingested / "schema.json")
    (out / "features.json").write_text(json.dumps(summary.feature_columns) + "\n")
    fleet = pd.read_parquet(labels / "fleet.parquet")
    held = pa.array(np.unique(fleet["vehicle_id"].to_numpy()).astype(np.int64))
    for split in SPLITS:
        table = pq.read_table(ingested / f"{split}_readouts.parquet")
        split_labels = pd.read_parquet(labels / f"{split}.parquet")
        if split == "train":  # the fleet holdout's readouts go apart: no statistics
            in_fleet = pc.is_in(table.column("vehicle_id"), value_set=held)
            _write_split(out, "fleet", table.filter(in_fleet), fleet, size)
            table = table.filter(pc.invert(in_fleet))
        _write_split(out, split, table, split_labels, size)


def _write_split(out: Path, name: str, table: pa.Table, labels: pd.DataFrame, size: int) -> None:
    ids = table.column("vehicle_id").to_numpy()
    times = table.column("time_step").to_numpy()
    values = np.empty((table.num_rows, table.num_columns - 2), dtype=np.float64)
    for j, column in enumerate(table.column_names[2:]):
        values[:, j] = table.column(column).to_numpy(zero_copy_only=False)
    np.save(out / f"{name}_values.npy", values)
    np.save(out / f"{name}_time.npy", times)
    np.save(out / f"{name}_vehicle.npy", ids)
    meta = build_windows(ids, times, labels, size)
    meta.to_parquet(out / f"{name}_windows.parquet", index=False)
    dropped = len(labels) - len(meta)
    log.info("%s: %d windows over %d readouts, mean length %.1f%s", name, len(meta), len(ids),
             meta["length"].mean() if len(meta) else 0.0,
             f", {dropped} labels without readouts dropped" if dropped else "")
