"""Ingest: a dataset folder in the official layout, validated, as typed parquet files.

Each readouts file is parsed in byte-range blocks (on the Dask cluster of
:mod:`componentx.compute`), every block through the checks of :mod:`componentx.data.readouts`
with errors naming the file, column and line; its rows go to their vehicle's bucket, and each
bucket is then sorted by (vehicle_id, time_step) and checked for duplicates on its own, so no
process holds more than a block or a bucket. This module adds the per-vehicle files
(time-to-event, labels, specifications) and the checks across files: every listed vehicle has
readouts and every vehicle with readouts is listed, a study does not end before its vehicle's
last readout, labels are classes of the dataset.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from componentx.compute import (
    dask_client,
    keyed_hash,
    map_tasks,
    positions_by_bucket,
    resolve_buckets,
)
from componentx.data import synthetic
from componentx.data.labels import check_windows
from componentx.data.layout import (
    ID,
    LABEL_COLUMNS,
    SPLITS,
    TIME,
    TTE_COLUMNS,
    TTE_FILE,
    DatasetSummary,
    bucket_file,
    labels_file,
    readouts_file,
    specifications_file,
)
from componentx.data.readouts import (
    bucket_parts,
    check_columns,
    first_line,
    read_header,
    read_table,
    readout_features,
    sorted_bucket,
    split_into_buckets,
)
from componentx.data.specs import write_vocabularies
from componentx.errors import DatasetError, ParamsError

log = logging.getLogger(__name__)
IN_PROCESS = {"buckets": 1, "workers": 1, "memory_per_worker": "auto"}  # params.compute


def ingest_source(data: dict, synthetic_settings: dict, labels: dict, compute: dict, out: Path
                  ) -> DatasetSummary:
    """Ingest ``data.source`` into ``out``: the built-in synthetic fleet (generated as CSV in
    the layout first, into ``out/csv``, removed after) or the folder ``data.csv_dir``."""
    if data["source"] == "csv":
        return ingest(Path(data["csv_dir"]), out, labels["num_classes"], labels["windows"],
                      compute)
    csv_dir = out / "csv"
    classes = (len(labels["windows"]) + 1 if labels["num_classes"] == "auto"
               else labels["num_classes"])
    synthetic.generate(csv_dir, synthetic_settings["n_train"], synthetic_settings["n_validation"],
                       synthetic_settings["n_test"], synthetic_settings["seed"],
                       tuple(check_windows(labels["windows"], classes)),
                       synthetic_settings["signal"], synthetic_settings["strength"])
    summary = ingest(csv_dir, out, labels["num_classes"], labels["windows"], compute)
    shutil.rmtree(csv_dir)
    return summary


@dataclass
class Vehicles:
    """The vehicles with readouts in a split (sorted ids) and the time of their last one."""

    ids: np.ndarray
    last_time: np.ndarray

    def last_of(self, ids: np.ndarray) -> np.ndarray:
        return self.last_time[np.searchsorted(self.ids, ids)]


def count_decreasing(table: pa.Table, feature_columns: list[str]) -> int:
    """Number of (readout, feature) steps where a cumulative value decreased within a vehicle."""
    ids = table.column(ID).to_numpy()
    same_vehicle = ids[1:] == ids[:-1]
    total = 0
    for column in feature_columns:
        values = table.column(column).to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            total += int(((values[1:] < values[:-1]) & same_vehicle).sum())
    return total


def merge_bucket(path: Path, parts: list[Path], features: list[str], out: Path
                 ) -> tuple[int, np.ndarray, np.ndarray, int, int]:
    """One bucket of a readouts file (:func:`~componentx.data.readouts.sorted_bucket`)
    written to ``out`` (a task). Returns the rows, the vehicles and their last times, the
    decreasing steps of cumulative features, and the sum of the rows' hashes (a digest that
    does not depend on the bucketing)."""
    table = sorted_bucket(path, parts, features)
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    ids, times = table.column(ID).to_numpy(), table.column(TIME).to_numpy()
    ends = np.r_[np.flatnonzero(ids[1:] != ids[:-1]), len(ids) - 1] if len(ids) else []
    rows = keyed_hash(*[c.to_numpy(zero_copy_only=False) for c in table.columns])
    return (table.num_rows, ids[ends], times[ends], count_decreasing(table, features),
            int(rows.sum(dtype=np.uint64)) if len(rows) else 0)


def ingest_readouts(client: object, path: Path, split: str, features: list[str],
                    buckets: int, out_dir: Path, summary: DatasetSummary) -> Vehicles:
    """A split's readouts file into ``out_dir/readouts/{split}/{bucket}.parquet``: counted,
    parsed and bucketed block by block, then sorted and checked bucket by bucket."""
    log.info("reading %s", path)
    parts = out_dir / ".parts" / split
    shutil.rmtree(parts, ignore_errors=True)  # a failed run's parts
    split_into_buckets(client, path, features, buckets, parts)
    merged = map_tasks(client, merge_bucket, [
        (path, bucket_parts(parts, bucket), features,
         bucket_file(out_dir / "readouts", split, bucket)) for bucket in range(buckets)],
        f"{split} buckets")
    shutil.rmtree(parts.parent)
    rows, ids, last, decreasing, digests = zip(*merged, strict=True)
    if sum(decreasing):
        message = f"{path.name}: {sum(decreasing)} decreasing steps in cumulative features "\
                  "(kept as they are)"
        log.warning(message)
        summary.warnings.append(message)
    summary.rows[split], summary.bucket_rows[split] = int(sum(rows)), [int(r) for r in rows]
    order = np.argsort(np.concatenate(ids), kind="stable")
    vehicles = Vehicles(np.concatenate(ids)[order], np.concatenate(last)[order])
    summary.vehicles[split] = len(vehicles.ids)
    summary.digest = hashlib.sha256(f"{summary.digest}{sum(digests) % 2**64:016x}".encode()
                                    ).hexdigest()
    return vehicles


def _require_present(path: Path, table: pa.Table, columns: list[str] | tuple[str, ...]) -> None:
    """No missing (null or NaN) or infinite value in ``columns`` of a per-vehicle file."""
    for column in columns:
        values = table.column(column).to_numpy(zero_copy_only=False)
        missing = table.column(column).is_null().to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            if np.isinf(values).any():
                raise DatasetError(path, f"infinite value {values[np.isinf(values)][0]} is not "
                                   "allowed", column, first_line(np.isinf(values)))
            missing = missing | np.isnan(values)
        if missing.any():
            raise DatasetError(path, "missing value (NaN or empty) is not allowed", column,
                               first_line(missing))


def _check_unique_ids(path: Path, ids: np.ndarray) -> None:
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise DatasetError(path, f"vehicle {ids[row]} appears more than once", ID, row + 2)


def _check_vehicles(path: Path, ids: np.ndarray, vehicles: Vehicles) -> None:
    """Every listed vehicle has readouts, and every vehicle with readouts is listed."""
    known = vehicles.ids
    orphan = ~np.isin(ids, known)
    if orphan.any():
        raise DatasetError(path, f"vehicle {ids[orphan][0]} has no readouts", ID,
                           first_line(orphan))
    unlisted = known[~np.isin(known, ids)]
    if unlisted.size:
        raise DatasetError(path, f"vehicle {unlisted[0]} has readouts but is not listed here "
                           f"({unlisted.size} such vehicles)", ID)


def read_tte(path: Path, vehicles: Vehicles) -> pa.Table:
    """Read and validate train_tte.csv against the train readouts' last times."""
    check_columns(path, read_header(path), TTE_COLUMNS)
    table = read_table(path, {ID: pa.int64(), TTE_COLUMNS[1]: pa.float64(),
                              TTE_COLUMNS[2]: pa.float64()}).select(list(TTE_COLUMNS))
    _require_present(path, table, TTE_COLUMNS)
    ids = table.column(ID).to_numpy()
    _check_unique_ids(path, ids)
    repair = table.column(TTE_COLUMNS[2]).to_numpy()
    bad = (repair != 0) & (repair != 1)
    if bad.any():
        raise DatasetError(path, f"in_study_repair must be 0 or 1, got {repair[bad][0]}",
                           TTE_COLUMNS[2], first_line(bad))
    length = table.column(TTE_COLUMNS[1]).to_numpy()
    _check_vehicles(path, ids, vehicles)
    last = vehicles.last_of(ids)
    early = length < last - 1e-9
    if early.any():
        row = int(np.flatnonzero(early)[0])
        raise DatasetError(path, f"length_of_study_time_step {length[row]} is before vehicle "
                           f"{ids[row]}'s last readout at {last[row]}", TTE_COLUMNS[1], row + 2)
    return table.set_column(2, TTE_COLUMNS[2], pa.array(repair.astype(np.int8)))


def read_labels(path: Path, vehicles: Vehicles, num_classes: int | None) -> pa.Table:
    """Read and validate a per-vehicle labels file (class of each vehicle's last readout);
    with ``num_classes`` None (inferred later) any class number >= 0 is accepted."""
    check_columns(path, read_header(path), LABEL_COLUMNS)
    table = read_table(path, {ID: pa.int64(), "class_label": pa.float64()}).select(
        list(LABEL_COLUMNS))
    _require_present(path, table, LABEL_COLUMNS)
    ids = table.column(ID).to_numpy()
    _check_unique_ids(path, ids)
    labels = table.column("class_label").to_numpy()
    fractional = labels != np.round(labels)
    if fractional.any():
        raise DatasetError(path, f"class_label {labels[fractional][0]:g} is not an integer",
                           "class_label", first_line(fractional))
    bad = (labels < 0) | (labels >= (num_classes or np.inf))
    if bad.any():
        allowed = f"0..{num_classes - 1}" if num_classes else ">= 0"
        raise DatasetError(path, f"class_label {labels[bad][0]:g} is out of range {allowed} "
                           "(labels.num_classes, or one more than labels.windows has edges)",
                           "class_label", first_line(bad))
    _check_vehicles(path, ids, vehicles)
    return table.set_column(1, "class_label", pa.array(labels.astype(np.int64)))


def read_specifications(path: Path, vehicles: Vehicles, spec_columns: list[str] | None
                        ) -> pa.Table:
    """Read a specifications file: vehicle_id plus categorical columns kept as strings."""
    header = read_header(path)
    if ID not in header:
        raise DatasetError(path, f"missing column '{ID}'", ID, 1)
    columns = [c for c in header if c != ID]
    if spec_columns is not None:
        check_columns(path, header, [ID, *spec_columns])
        columns = spec_columns
    table = read_table(path, {ID: pa.int64(), **{c: pa.string() for c in columns}})
    table = table.select([ID, *columns])
    _require_present(path, table, [ID])
    ids = table.column(ID).to_numpy()
    _check_unique_ids(path, ids)
    _check_vehicles(path, ids, vehicles)
    return table


def known_num_classes(num_classes: int | str, train_target: str, windows: list[float] | None
                      ) -> int | None:
    """``labels.num_classes``; with "auto", one more than the class windows when train has
    time-to-event, or None: inferred from the label files after reading them."""
    if num_classes != "auto":
        return int(num_classes)
    if train_target != "tte":
        return None
    if not windows:
        raise ParamsError("labels.num_classes is auto and train has time-to-event: set "
                          "labels.windows (the class windows)")
    return len(windows) + 1


def ingest(csv_dir: Path, out_dir: Path, num_classes: int | str,
           windows: list[float] | None = None, compute: dict | None = None) -> DatasetSummary:
    """Validate a dataset folder and write typed parquet files into ``out_dir``.

    Writes ``readouts/{split}/{bucket}.parquet`` (sorted by vehicle and time, in
    ``compute.buckets`` vehicle buckets; ``compute`` is ``params.compute``, one bucket in this
    process by default), ``{split}_labels.parquet`` for validation and test,
    ``train_tte.parquet`` or ``train_labels.parquet``, ``{split}_specs.parquet`` when
    specifications exist, each also per bucket (:func:`write_with_buckets`), the train
    specifications' ``vocabularies.json``, and ``schema.json``. ``num_classes`` "auto" is
    inferred: one more than ``windows`` (``labels.windows``) when train comes with
    time-to-event, else the largest class in the label files plus one.
    """
    csv_dir, out_dir = Path(csv_dir), Path(out_dir)
    if not csv_dir.is_dir():
        raise DatasetError(csv_dir, "dataset folder not found (set data.csv_dir)")
    missing = [readouts_file(s) for s in SPLITS if not (csv_dir / readouts_file(s)).is_file()]
    if missing:
        raise DatasetError(csv_dir / missing[0], f"file not found (missing: {', '.join(missing)};"
                           " the expected layout is in data/raw/README.md)")
    tte_path, train_labels_path = csv_dir / TTE_FILE, csv_dir / labels_file("train")
    if tte_path.exists() == train_labels_path.exists():
        raise DatasetError(csv_dir, "expected exactly one of train_tte.csv and train_labels.csv")
    train_target = "tte" if tte_path.exists() else "labels"
    classes = known_num_classes(num_classes, train_target, windows)
    paths = {split: csv_dir / readouts_file(split) for split in SPLITS}
    features = readout_features(paths["train"], None)
    for split in SPLITS[1:]:
        readout_features(paths[split], features)
    compute = compute or IN_PROCESS
    buckets = resolve_buckets(compute["buckets"], sum(p.stat().st_size for p in paths.values()))
    summary = DatasetSummary(feature_columns=features, spec_columns=[],
                             train_target=train_target, buckets=buckets)
    largest = 0
    out_dir.mkdir(parents=True, exist_ok=True)
    with dask_client(compute, buckets) as client:
        for split in SPLITS:
            vehicles = ingest_readouts(client, paths[split], split, features, buckets, out_dir,
                                       summary)
            if split == "train" and train_target == "tte":
                write_with_buckets(read_tte(tte_path, vehicles), out_dir, "tte", split,
                                   buckets)
            else:
                labels = read_labels(csv_dir / labels_file(split), vehicles, classes)
                write_with_buckets(labels, out_dir, "labels", split, buckets)
                largest = max(largest, int(pc.max(labels.column("class_label")).as_py()))
            _ingest_specifications(csv_dir, split, vehicles, summary, out_dir)
    summary.num_classes = classes if classes is not None else _inferred_classes(largest)
    summary.save(out_dir / "schema.json")
    log.info("ingested %s rows of %s vehicles in %d buckets", summary.rows, summary.vehicles,
             buckets)
    return summary


def _ingest_specifications(csv_dir: Path, split: str, vehicles: Vehicles,
                           summary: DatasetSummary, out_dir: Path) -> None:
    path = csv_dir / specifications_file(split)
    if (csv_dir / specifications_file("train")).exists():
        specs = read_specifications(path, vehicles,
                                    summary.spec_columns if split != "train" else None)
        summary.spec_columns = specs.column_names[1:]
        write_with_buckets(specs, out_dir, "specs", split, summary.buckets)
        if split == "train":
            write_vocabularies(specs, out_dir)
    elif path.exists():
        raise DatasetError(path, "specifications exist for this split but not for train")


def write_with_buckets(table: pa.Table, out_dir: Path, kind: str, split: str, buckets: int
                       ) -> None:
    """A per-vehicle table (``kind``: tte, labels or specs) as ``{split}_{kind}.parquet``,
    and its rows of each vehicle bucket as ``{kind}/{split}/{bucket}.parquet``: a bucket's
    task reads its own vehicles' rows only."""
    pq.write_table(table, out_dir / f"{split}_{kind}.parquet")
    for bucket, rows in enumerate(positions_by_bucket(table.column(ID).to_numpy(), buckets)):
        bucket_file(out_dir / kind, split, bucket).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table.take(rows), bucket_file(out_dir / kind, split, bucket))


def _inferred_classes(largest_label: int) -> int:
    if largest_label + 1 < 2:
        raise DatasetError("labels", "labels.num_classes is auto but the largest class_label in "
                           f"the label files gives {largest_label + 1} class; a classifier "
                           "needs at least 2")
    log.info("labels.num_classes is auto: %d classes, from the largest class_label in the label "
             "files", largest_label + 1)
    return largest_label + 1
