"""The dataset contract: the official Component X CSV layout, read with pyarrow and validated.

A dataset is one folder holding, per split, operational readouts, labels and (optionally)
specifications. Train comes with time-to-event (``train_tte.csv``) or, for datasets labelled
per vehicle, ``train_labels.csv``. Every problem found is raised as :class:`DatasetError`
naming the file, the column and the line (1-based, the header being line 1).
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from componentx.errors import StageError

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
ID = "vehicle_id"
TIME = "time_step"
TTE_COLUMNS = (ID, "length_of_study_time_step", "in_study_repair")
LABEL_COLUMNS = (ID, "class_label")
READ_BLOCK_BYTES = 16 << 20


class DatasetError(StageError, ValueError):
    """Bad input, located as precisely as possible."""

    def __init__(self, file: Path | str, message: str, column: str | None = None,
                 line: int | None = None) -> None:
        where = str(file)
        if column is not None:
            where += f", column '{column}'"
        if line is not None:
            where += f", line {line}"
        super().__init__(f"{where}: {message}")
        self.file, self.column, self.line = str(file), column, line


def readouts_file(split: str) -> str:
    return f"{split}_operational_readouts.csv"


def specifications_file(split: str) -> str:
    return f"{split}_specifications.csv"


def labels_file(split: str) -> str:
    return f"{split}_labels.csv"


@dataclass
class DatasetSummary:
    """What ingest learned about a dataset; saved as ``schema.json`` beside the parquet."""

    feature_columns: list[str]
    spec_columns: list[str]
    train_target: str  # "tte" or "labels"
    num_classes: int = 0  # labels.num_classes, or inferred from the data when it is "auto"
    rows: dict[str, int] = field(default_factory=dict)
    vehicles: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> DatasetSummary:
        return cls(**json.loads(Path(path).read_text()))


def read_header(path: Path) -> list[str]:
    """Column names of a CSV file; errors on a missing or empty file."""
    if not path.is_file():
        raise DatasetError(path, "file not found")
    with path.open("rb") as handle:
        head = handle.read(1 << 16)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.start < len(head) - 3:  # not a multi-byte character cut by the read
            line = head[:error.start].count(b"\n") + 1
            raise DatasetError(path, f"is not UTF-8 text (byte {error.start}: a binary or "
                               "differently encoded file?)", line=line) from None
        text = head[:error.start].decode("utf-8")
    if "\x00" in text:
        raise DatasetError(path, "is not a text CSV file (it contains NUL bytes)",
                           line=text[:text.index("\x00")].count("\n") + 1)
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), None)
        if not header or header == [""]:
            raise DatasetError(path, "file is empty (no header)")
        if next(handle, None) is None:
            raise DatasetError(path, "file has a header but no data rows", line=2)
    duplicated = sorted({c for c in header if header.count(c) > 1})
    if duplicated:
        raise DatasetError(path, f"duplicate column names {duplicated}", line=1)
    return header


def check_columns(path: Path, header: list[str], expected: list[str] | tuple[str, ...]) -> None:
    """Error on missing or extra columns (order is free)."""
    missing = [c for c in expected if c not in header]
    if missing:
        raise DatasetError(path, f"missing column(s) {missing}; expected {list(expected)}",
                           column=missing[0], line=1)
    extra = [c for c in header if c not in expected]
    if extra:
        raise DatasetError(path, f"unexpected column(s) {extra}; expected {list(expected)}",
                           column=extra[0], line=1)


_NUMBER = r"(?i)^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$|^\s*[-+]?(inf|nan)\s*$"
_INTEGER = r"^\s*[-+]?\d+\s*$"


def locate_bad_value(path: Path, column: str, integer: bool) -> DatasetError:
    """Find the first value of ``column`` that does not parse; only runs on the error path."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(include_columns=[column],
                                             column_types={column: pa.string()}),
    )
    offset = 0
    for batch in reader:
        text = batch.column(0)
        blank = pc.match_substring_regex(text, r"^\s*$")
        numeric = pc.match_substring_regex(text, _INTEGER if integer else _NUMBER)
        bad = pc.and_(pc.invert(blank), pc.invert(numeric)).fill_null(False).to_numpy(
            zero_copy_only=False)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            kind = "an integer" if integer else "a number"
            return DatasetError(path, f"value {text[row].as_py()!r} is not {kind}",
                                column=column, line=offset + row + 2)
        offset += batch.num_rows
    return DatasetError(path, "values do not parse as numbers", column=column)


def read_table(path: Path, column_types: dict[str, pa.DataType]) -> pa.Table:
    """Read a CSV in typed batches; errors name the column and line of a non-numeric value.

    Empty fields and NaN are read as nulls; the caller decides where they are allowed.
    """
    header = read_header(path)
    convert = pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True,
                                   null_values=["", "NaN", "nan", "NA", "null"])
    batches = []
    try:
        reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES),
                                convert_options=convert)
        schema = reader.schema
        for batch in reader:
            batches.append(batch)
    except pa.ArrowInvalid as error:
        match = re.search(r"CSV column #(\d+)", str(error))
        if match is None:
            raise DatasetError(path, f"cannot be parsed as CSV: {error}") from None
        column = header[int(match.group(1))]
        integer = pa.types.is_integer(column_types.get(column, pa.float64()))
        raise locate_bad_value(path, column, integer) from None
    return pa.Table.from_batches(batches, schema=schema)


def _first_line(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 2


def _require_finite(path: Path, table: pa.Table, columns: list[str], allow_nan: bool) -> None:
    for column in columns:
        values = table.column(column).to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            if np.isinf(values).any():
                raise DatasetError(path, "infinite value", column, _first_line(np.isinf(values)))
            if not allow_nan and np.isnan(values).any():
                raise DatasetError(path, "missing value (NaN or empty) is not allowed", column,
                                   _first_line(np.isnan(values)))
        elif table.column(column).null_count:
            mask = table.column(column).is_null().to_numpy(zero_copy_only=False)
            raise DatasetError(path, "missing value (NaN or empty) is not allowed", column,
                               _first_line(mask))


def _check_unique_ids(path: Path, ids: np.ndarray) -> None:
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise DatasetError(path, f"vehicle {ids[row]} appears more than once", ID, row + 2)


@dataclass
class Readouts:
    """One split's readouts, sorted by (vehicle_id, time_step)."""

    table: pa.Table
    last_time: dict[int, float]


def read_readouts(path: Path, feature_columns: list[str] | None = None) -> Readouts:
    """Read, validate and sort one readouts file."""
    header = read_header(path)
    for required in (ID, TIME):
        if required not in header:
            raise DatasetError(path, f"missing column '{required}'", required, 1)
    features = [c for c in header if c not in (ID, TIME)]
    if not features:
        raise DatasetError(path, "no feature columns besides vehicle_id and time_step", line=1)
    if feature_columns is not None and features != feature_columns:
        missing = [c for c in feature_columns if c not in features]
        extra = [c for c in features if c not in feature_columns]
        detail = f"missing {missing}, extra {extra}" if missing or extra else "different order"
        raise DatasetError(path, f"readout columns differ from the train split: {detail}",
                           line=1)
    types = {ID: pa.int64(), TIME: pa.float64(), **{c: pa.float64() for c in features}}
    table = read_table(path, types).select([ID, TIME, *features])
    _require_finite(path, table, [ID, TIME], allow_nan=False)
    _require_finite(path, table, features, allow_nan=True)
    time = table.column(TIME).to_numpy()
    if (time < 0).any():
        raise DatasetError(path, f"negative time_step {time[time < 0][0]}", TIME,
                           _first_line(time < 0))
    ids = table.column(ID).to_numpy()
    order = np.lexsort((time, ids))
    same = (ids[order][1:] == ids[order][:-1]) & (time[order][1:] == time[order][:-1])
    if same.any():
        first, second = sorted(order[np.flatnonzero(same)[0]: np.flatnonzero(same)[0] + 2])
        raise DatasetError(path, f"duplicate (vehicle_id, time_step) = ({ids[first]}, "
                           f"{time[first]}), also on line {first + 2}", TIME, second + 2)
    table = table.take(pa.array(order))
    ids, time = ids[order], time[order]
    ends = np.r_[np.flatnonzero(ids[1:] != ids[:-1]), len(ids) - 1]
    return Readouts(table, dict(zip(ids[ends].tolist(), time[ends].tolist(), strict=True)))


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


def read_tte(path: Path, readouts: Readouts) -> pa.Table:
    """Read and validate train_tte.csv against the train readouts."""
    check_columns(path, read_header(path), TTE_COLUMNS)
    table = read_table(path, {ID: pa.int64(), TTE_COLUMNS[1]: pa.float64(),
                              TTE_COLUMNS[2]: pa.float64()}).select(list(TTE_COLUMNS))
    _require_finite(path, table, list(TTE_COLUMNS), allow_nan=False)
    ids = table.column(ID).to_numpy()
    _check_unique_ids(path, ids)
    repair = table.column(TTE_COLUMNS[2]).to_numpy()
    bad = (repair != 0) & (repair != 1)
    if bad.any():
        raise DatasetError(path, f"in_study_repair must be 0 or 1, got {repair[bad][0]}",
                           TTE_COLUMNS[2], _first_line(bad))
    length = table.column(TTE_COLUMNS[1]).to_numpy()
    _check_vehicles(path, ids, readouts)
    last = np.array([readouts.last_time[i] for i in ids.tolist()])
    early = length < last - 1e-9
    if early.any():
        row = int(np.flatnonzero(early)[0])
        raise DatasetError(path, f"length_of_study_time_step {length[row]} is before vehicle "
                           f"{ids[row]}'s last readout at {last[row]}", TTE_COLUMNS[1], row + 2)
    return table.set_column(2, TTE_COLUMNS[2], pa.array(repair.astype(np.int8)))


def read_labels(path: Path, readouts: Readouts, num_classes: int | None) -> pa.Table:
    """Read and validate a per-vehicle labels file (class of each vehicle's last readout);
    with ``num_classes`` None any class number >= 0 is accepted."""
    check_columns(path, read_header(path), LABEL_COLUMNS)
    table = read_table(path, {ID: pa.int64(), "class_label": pa.float64()}).select(
        list(LABEL_COLUMNS))
    _require_finite(path, table, list(LABEL_COLUMNS), allow_nan=False)
    ids = table.column(ID).to_numpy()
    _check_unique_ids(path, ids)
    labels = table.column("class_label").to_numpy()
    fractional = labels != np.round(labels)
    if fractional.any():
        raise DatasetError(path, f"class_label {labels[fractional][0]:g} is not an integer",
                           "class_label", _first_line(fractional))
    bad = (labels < 0) | (labels >= (num_classes or np.inf))
    if bad.any():
        allowed = f"0..{num_classes - 1} (labels.num_classes)" if num_classes else ">= 0"
        raise DatasetError(path, f"class_label {labels[bad][0]:g} is out of range {allowed}",
                           "class_label", _first_line(bad))
    _check_vehicles(path, ids, readouts)
    return table.set_column(1, "class_label", pa.array(labels.astype(np.int64)))


def _check_vehicles(path: Path, ids: np.ndarray, readouts: Readouts) -> None:
    """Every listed vehicle has readouts, and every vehicle with readouts is listed."""
    known = np.fromiter(readouts.last_time.keys(), dtype=np.int64)
    orphan = ~np.isin(ids, known)
    if orphan.any():
        raise DatasetError(path, f"vehicle {ids[orphan][0]} has no readouts", ID,
                           _first_line(orphan))
    unlisted = known[~np.isin(known, ids)]
    if unlisted.size:
        raise DatasetError(path, f"vehicle {unlisted[0]} has readouts but is not listed here "
                           f"({unlisted.size} such vehicles)", ID)


def read_specifications(path: Path, readouts: Readouts, spec_columns: list[str] | None) -> pa.Table:
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
    _require_finite(path, table, [ID], allow_nan=False)
    ids = table.column(ID).to_numpy()
    _check_unique_ids(path, ids)
    _check_vehicles(path, ids, readouts)
    return table


def ingest(csv_dir: Path, out_dir: Path, num_classes: int | str,
           windows: list[float] | None = None) -> DatasetSummary:
    """Validate a dataset folder and write typed parquet files into ``out_dir``.

    Writes ``{split}_readouts.parquet`` (sorted), ``{split}_labels.parquet`` for validation
    and test, ``train_tte.parquet`` or ``train_labels.parquet``, ``{split}_specs.parquet``
    when specifications exist, and ``schema.json``. ``num_classes`` "auto" is inferred: one
    more than ``windows`` (``labels.windows``) when train comes with time-to-event, else the
    largest class in the label files plus one.
    """
    csv_dir, out_dir = Path(csv_dir), Path(out_dir)
    if not csv_dir.is_dir():
        raise DatasetError(csv_dir, "dataset folder not found (set data.csv_dir)")
    missing = [readouts_file(s) for s in SPLITS if not (csv_dir / readouts_file(s)).is_file()]
    if missing:
        raise DatasetError(csv_dir / missing[0], f"file not found (missing: {', '.join(missing)};"
                           " the expected layout is in data/raw/README.md)")
    tte_path, train_labels_path = csv_dir / "train_tte.csv", csv_dir / labels_file("train")
    if tte_path.exists() == train_labels_path.exists():
        raise DatasetError(csv_dir, "expected exactly one of train_tte.csv and train_labels.csv")
    has_specs = (csv_dir / specifications_file("train")).exists()

    summary, largest = None, 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        path = csv_dir / readouts_file(split)
        log.info("reading %s", path)
        readouts = read_readouts(path, summary.feature_columns if summary else None)
        if summary is None:
            summary = DatasetSummary(
                feature_columns=readouts.table.column_names[2:], spec_columns=[],
                train_target="tte" if tte_path.exists() else "labels")
        decreasing = count_decreasing(readouts.table, summary.feature_columns)
        if decreasing:
            message = (f"{path.name}: {decreasing} decreasing steps in cumulative features "
                       "(kept as they are)")
            log.warning(message)
            summary.warnings.append(message)
        pq.write_table(readouts.table, out_dir / f"{split}_readouts.parquet")
        summary.rows[split] = readouts.table.num_rows
        summary.vehicles[split] = len(readouts.last_time)

        if split == "train" and summary.train_target == "tte":
            pq.write_table(read_tte(tte_path, readouts), out_dir / "train_tte.parquet")
        else:
            labels = read_labels(csv_dir / labels_file(split), readouts,
                                 None if num_classes == "auto" else num_classes)
            pq.write_table(labels, out_dir / f"{split}_labels.parquet")
            largest = max(largest, int(pc.max(labels.column("class_label")).as_py()))

        spec_path = csv_dir / specifications_file(split)
        if has_specs:
            specs = read_specifications(spec_path, readouts,
                                        summary.spec_columns if split != "train" else None)
            summary.spec_columns = specs.column_names[1:]
            pq.write_table(specs, out_dir / f"{split}_specs.parquet")
        elif spec_path.exists():
            raise DatasetError(spec_path, "specifications exist for this split but not for train")
    assert summary is not None
    summary.num_classes = resolve_num_classes(num_classes, summary.train_target, windows, largest)
    summary.save(out_dir / "schema.json")
    return summary


def resolve_num_classes(num_classes: int | str, train_target: str, windows: list[float] | None,
                        largest_label: int) -> int:
    """``labels.num_classes``, or with "auto" what the data imply (logged)."""
    if num_classes != "auto":
        return int(num_classes)
    if train_target == "tte":
        if not windows:
            raise ValueError("labels.num_classes is auto and train has time-to-event: set "
                             "labels.windows (the class windows)")
        inferred, source = len(windows) + 1, f"labels.windows {list(windows)}"
    else:
        inferred, source = largest_label + 1, "the largest class_label in the label files"
    if inferred < 2:
        raise ValueError(f"labels.num_classes is auto but {source} gives {inferred} class; "
                         "a classifier needs at least 2")
    log.info("labels.num_classes is auto: %d classes, from %s", inferred, source)
    return inferred

