"""Windows over the readouts, stored as an index into the sorted readouts of their bucket.

A window is the last ``size`` readouts of a vehicle at or before a reference time. Windows
overlap heavily, so they are never materialised on disk: each is described by its vehicle
bucket, the row of that bucket just after its last readout (``end_row``) and its true length;
:func:`gather_rows` turns a batch of windows into row indices, left-padded with a padding row.
A split's windows are kept in one global order, (vehicle, reference time), whatever the
bucketing.
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

from componentx.compute import dask_client, map_tasks
from componentx.data.layout import SPLITS, DatasetSummary, bucket_file

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["vehicle_id", "ref_time", "class_label", "bucket", "end_row", "length"]


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


WINDOW_SPLITS = (*SPLITS, "fleet")  # the fleet holdout's train vehicles are a split here


def readout_arrays(windows: Path, split: str, bucket: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A bucket's readouts as the windowing stage wrote them: values (rows, features) float64
    (memory-mapped), times and vehicle ids (rows,), sorted by vehicle and time."""
    base = str(bucket_file(windows, split, bucket, ""))
    return (np.load(f"{base}.values.npy", mmap_mode="r"), np.load(f"{base}.time.npy"),
            np.load(f"{base}.vehicle.npy"))


def read_window_index(windows: Path, split: str) -> pd.DataFrame:
    """A split's windows in their global order (vehicle, reference time): vehicle_id,
    ref_time, class_label, and where the window is: bucket, end_row, length."""
    return pd.read_parquet(windows / f"{split}_windows.parquet")


def read_bucket_index(windows: Path, split: str, bucket: int) -> pd.DataFrame:
    """One bucket's rows of :func:`read_window_index`, in the same order (what a task over
    a bucket's windows reads, where the whole split's index is not in the driver)."""
    return pd.read_parquet(bucket_file(windows, split, bucket, ".index.parquet"))


def bucket_rows(windows: Path, split: str) -> list[int]:
    """The readouts of each bucket of a split (``manifest.json``)."""
    return json.loads((windows / "manifest.json").read_text())["rows"][split]


def buckets_of(windows: Path) -> int:
    return json.loads((windows / "manifest.json").read_text())["buckets"]


def window_bucket(ingested: Path, labels: Path, out: Path, split: str, bucket: int, size: int
                  ) -> dict[str, pd.DataFrame]:
    """One bucket of a split: its readouts as arrays (:func:`readout_arrays`) and the windows
    of its labels; for train, the fleet holdout's vehicles go apart, as the split ``fleet``
    (a task). Writes and returns the window index of each split, in the order of vehicle and
    reference time (:func:`read_bucket_index`)."""
    table = pq.read_table(bucket_file(ingested / "readouts", split, bucket))
    parts = {split: (table, pd.read_parquet(bucket_file(labels, split, bucket)))}
    if split == "train":  # the fleet holdout's readouts go apart: no statistics
        fleet = pd.read_parquet(bucket_file(labels, "fleet", bucket))
        held = pa.array(np.unique(fleet["vehicle_id"].to_numpy()).astype(np.int64))
        in_fleet = pc.is_in(table.column("vehicle_id"), value_set=held)
        parts = {split: (table.filter(pc.invert(in_fleet)), parts[split][1]),
                 "fleet": (table.filter(in_fleet), fleet)}
    found = {}
    for name, (rows, name_labels) in parts.items():
        ids = rows.column("vehicle_id").to_numpy()
        times = rows.column("time_step").to_numpy()
        values = np.empty((rows.num_rows, rows.num_columns - 2), dtype=np.float64)
        for j, column in enumerate(rows.column_names[2:]):
            values[:, j] = rows.column(column).to_numpy(zero_copy_only=False)
        base = bucket_file(out, name, bucket, "")
        base.parent.mkdir(parents=True, exist_ok=True)
        for suffix, array in (("values", values), ("time", times), ("vehicle", ids)):
            np.save(f"{base}.{suffix}.npy", array)
        found[name] = build_windows(ids, times, name_labels, size).assign(
            bucket=bucket).sort_values(["vehicle_id", "ref_time"], kind="stable",
                                       ignore_index=True)[INDEX_COLUMNS]
        found[name].to_parquet(f"{base}.index.parquet", index=False)
    return found


def window_splits(ingested: Path, labels: Path, out: Path, size: int, compute: dict) -> None:
    """Write, bucket by bucket, every split's readouts as memory-mappable arrays and the
    window index of its labels (``{split}_windows.parquet``, in the global order of vehicle
    and reference time), ``features.json`` and ``manifest.json``. The fleet holdout's readouts
    are written apart as the split ``fleet``, never among train's."""
    summary = DatasetSummary.load(ingested / "schema.json")
    (out / "features.json").write_text(json.dumps(summary.feature_columns) + "\n")
    manifest = {"buckets": summary.buckets, "rows": {}}
    with dask_client(compute, summary.buckets) as client:
        for split in SPLITS:
            results = map_tasks(client, window_bucket, [
                (ingested, labels, out, split, bucket, size)
                for bucket in range(summary.buckets)], f"{split} windows")
            for name in results[0]:
                index = pd.concat([r[name] for r in results], ignore_index=True)
                index = index.sort_values(["vehicle_id", "ref_time"], kind="stable",
                                          ignore_index=True)
                index[INDEX_COLUMNS].to_parquet(out / f"{name}_windows.parquet", index=False)
                rows = [int(np.load(f"{bucket_file(out, name, b, '')}.time.npy",
                                    mmap_mode="r").shape[0]) for b in range(summary.buckets)]
                manifest["rows"][name] = rows
                log.info("%s: %d windows over %d readouts, mean length %.1f", name, len(index),
                         sum(rows), index["length"].mean() if len(index) else 0.0)
    (out / "manifest.json").write_text(json.dumps(manifest) + "\n")
