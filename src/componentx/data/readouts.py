"""CSV files of the layout, read with pyarrow in typed blocks, and the checks every readout
passes: the one definition that ingest and ``componentx predict`` share.

Every problem is a :class:`~componentx.errors.DatasetError` naming the file, the column and
the line (1-based, the header being line 1). Empty fields, ``NaN``, ``NA`` and ``null`` are
read as missing; where a value may be missing is decided by the caller.
"""

from __future__ import annotations

import csv
import io
import itertools
import operator
import queue
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather

from componentx.compute import bucket_of, map_tasks
from componentx.data.layout import ID, TIME
from componentx.errors import DatasetError

READ_BLOCK_BYTES = 16 << 20
PARSE_BLOCK_BYTES = 1 << 20  # what each of pyarrow's threads parses at once
NULL_VALUES = ["", "NaN", "nan", "NA", "null"]
LINE = "__line"  # a readout's line in its file, carried until the duplicate check
_NUMBER = r"(?i)^\s*[-+]?(\d+\.?\d*|\.\d+)(e[-+]?\d+)?\s*$|^\s*[-+]?(inf|nan)\s*$"
_INTEGER = r"^\s*[-+]?\d+\s*$"


def read_header(path: Path) -> list[str]:
    """Column names of a CSV file; errors on a missing, empty, binary or non-UTF-8 file."""
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
    # utf-8-sig: a byte-order mark, as spreadsheet programs write, is not part of the header
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
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


def check_readout_columns(path: Path, header: list[str], features: list[str], against: str,
                          extra_column: str | None = None, carried: tuple[str, ...] = ()
                          ) -> None:
    """A readouts header holds vehicle_id, time_step, ``extra_column`` when given, and
    exactly ``features``, in any order (they are read by name), and may hold the ``carried``
    columns (read by someone else); ``against`` says where ``features`` come from ("the
    train split's", "the model's")."""
    for required in (ID, TIME, *([extra_column] if extra_column else [])):
        if required not in header:
            raise DatasetError(path, f"missing column '{required}'", required, 1)
    present = [c for c in header if c not in (ID, TIME, extra_column, *carried)]
    missing = [c for c in features if c not in present]
    extra = [c for c in present if c not in features]
    if missing or extra:
        detail = ", ".join(filter(None, [f"missing {missing}" if missing else "",
                                         f"unexpected {extra}" if extra else ""]))
        raise DatasetError(path, f"columns differ from {against}: {detail}",
                           (missing or extra)[0], 1)


@dataclass(frozen=True)
class Block:
    """A piece of a CSV file to parse on its own: the header, then the whole lines in bytes
    [start, end) of ``path``, the first of which is numbered ``first_line`` (2: as in a
    whole file, the header being line 1; :func:`split_into_buckets` moves a block's numbers
    to the file's). ``Block.whole(path)`` is the whole file."""

    path: Path
    start: int = 0
    end: int | None = None
    first_line: int = 2

    @classmethod
    def whole(cls, path: Path) -> Block:
        return cls(Path(path))

    def source(self) -> Any:
        """What pyarrow reads: the file, or the header and the block's lines in memory."""
        if self.end is None:
            return self.path
        with self.path.open("rb") as handle:
            header = handle.readline()
            handle.seek(self.start)
            lines = handle.read(self.end - self.start)
        if len(lines) != self.end - self.start:  # a file cut while it is read
            raise OSError(f"{self.path} ends at byte {self.start + len(lines)}, before its "
                          f"block's end at {self.end}")
        return io.BytesIO(header + lines)


def data_lines(source: io.BytesIO) -> int:
    """The lines after the header line in a block's :meth:`Block.source` (blank ones too;
    a last line without a line break counts)."""
    data = source.getvalue()
    body = data.find(b"\n") + 1
    return data.count(b"\n", body) + (1 if len(data) > body and not data.endswith(b"\n")
                                       else 0)


def line_blocks(path: Path, block_bytes: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``block_bytes`` that cover the file's data lines, each starting at
    the beginning of a line (quoted fields must not hold line breaks)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        handle.readline()
        bounds = [handle.tell()]
        while bounds[-1] < size:
            handle.seek(min(bounds[-1] + block_bytes, size))
            if handle.tell() < size:
                handle.readline()
            bounds.append(handle.tell())
    return list(itertools.pairwise(bounds))


class ArrivingFile:
    """A CSV file written chunk by chunk (a streamed request's body) and read block by block
    while it arrives: :meth:`write` appends a chunk and hands each complete block on, cut
    where :func:`line_blocks` would cut the whole file, flushed first; :meth:`ranges`, in
    another thread, yields those byte ranges as they come, until :meth:`close`. ``expected``
    is the file's announced size (None: unknown until closed)."""

    _END = None

    def __init__(self, handle: BinaryIO, expected: int | None, block_bytes: int) -> None:
        self.handle, self.expected, self.block_bytes = handle, expected, block_bytes
        self.size = 0  # bytes written
        self.blocks = 0  # blocks handed on
        self.start: int | None = None  # the first byte of the block being written
        self._search = 0  # where the next cut's line break may be, from the file's start
        self._ranges: queue.SimpleQueue = queue.SimpleQueue()

    def write(self, chunk: bytes) -> None:
        self.handle.write(chunk)
        offset, self.size = self.size, self.size + len(chunk)
        while self._search < self.size:
            newline = chunk.find(b"\n", max(self._search - offset, 0))
            if newline < 0:
                return
            end = offset + newline + 1
            if self.start is not None:
                self._give(self.start, end)
            self.start, self._search = end, end + self.block_bytes

    def close(self, complete: bool = True) -> None:
        """The file is whole (its last block handed on), or, with ``complete`` False, will
        never be: :meth:`ranges` then raises."""
        if complete and self.start is not None and self.start < self.size:
            self._give(self.start, self.size)
        self.expected = self.size if complete else self.expected
        self._ranges.put(self._END if complete else OSError("the body ended early"))

    def _give(self, start: int, end: int) -> None:
        self.handle.flush()
        self.blocks += 1
        self._ranges.put((start, end))

    def ranges(self) -> Iterator[tuple[int, int]]:
        while (block := self._ranges.get()) is not self._END:
            if isinstance(block, Exception):
                raise block
            yield block


def locate_bad_value(block: Block, column: str, integer: bool) -> DatasetError:
    """Find the first value of ``column`` that does not parse; only runs on the error path."""
    reader = pacsv.open_csv(
        block.source(), read_options=pacsv.ReadOptions(block_size=READ_BLOCK_BYTES),
        convert_options=pacsv.ConvertOptions(include_columns=[column],
                                             column_types={column: pa.string()}))
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
            return DatasetError(block.path, f"value {text[row].as_py()!r} is not {kind}",
                                column=column, line=block.first_line + offset + row)
        offset += batch.num_rows
    return DatasetError(block.path, "values do not parse as numbers", column=column)


def typed_table(block: Block, column_types: dict[str, pa.DataType], source: Any = None
                ) -> pa.Table:
    """The block as a table with ``column_types`` (from ``source``, its
    :meth:`Block.source` read already, where given), parsed on pyarrow's threads; a value
    that does not parse is one error naming its column and line (the header is read again
    only then)."""
    convert = pacsv.ConvertOptions(column_types=column_types, strings_can_be_null=True,
                                   null_values=NULL_VALUES)
    with block.path.open("rb") as handle:  # pyarrow's first block must hold the header
        size = max(PARSE_BLOCK_BYTES, 2 * len(handle.readline()))
    try:
        return pacsv.read_csv(block.source() if source is None else source,
                              read_options=pacsv.ReadOptions(block_size=size),
                              convert_options=convert)
    except pa.ArrowInvalid as error:
        match = re.search(r"CSV column #(\d+)", str(error))
        if match is None:
            raise DatasetError(block.path, f"cannot be parsed as CSV: {error}") from None
        column = read_header(block.path)[int(match.group(1))]
        integer = pa.types.is_integer(column_types.get(column, pa.float64()))
        raise locate_bad_value(block, column, integer) from None


def read_table(path: Path, column_types: dict[str, pa.DataType]) -> pa.Table:
    """A small CSV file (labels, time-to-event, specifications) as one typed table."""
    read_header(path)  # a missing, empty or binary file is one clear line
    return typed_table(Block.whole(path), column_types)


def first_line(mask: np.ndarray) -> int:
    """The file line of the first true row of ``mask`` (rows of a whole file)."""
    return int(np.flatnonzero(mask)[0]) + 2


def check_readout_block(path: Path, rows: pa.RecordBatch | pa.Table, first: int) -> None:
    """No missing vehicle_id or time_step, no infinite value anywhere, no negative time;
    ``first`` is the file line of the block's first row."""
    for name in rows.schema.names:
        column = rows.column(name)
        values = column.to_numpy(zero_copy_only=False)
        missing = column.is_null().to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f":
            missing = missing | np.isnan(values)
            if np.isinf(values).any():
                row = int(np.flatnonzero(np.isinf(values))[0])
                raise DatasetError(path, f"infinite value {values[row]} is not allowed", name,
                                   first + row)
        if name in (ID, TIME) and missing.any():
            raise DatasetError(path, "missing value (NaN or empty) is not allowed", name,
                               first + int(np.flatnonzero(missing)[0]))
    times = rows.column(TIME).to_numpy()
    if (times < 0).any():
        row = int(np.flatnonzero(times < 0)[0])
        raise DatasetError(path, f"negative time_step {times[row]}", TIME, first + row)


def readout_features(path: Path, features: list[str] | None, against: str = "the train split's",
                     extra_column: str | None = None, carried: tuple[str, ...] = ()
                     ) -> list[str]:
    """The feature columns of a readouts file: with ``features`` None, every column but
    vehicle_id and time_step; else the header must hold exactly ``features``, in any order
    (see :func:`check_readout_columns`)."""
    header = read_header(path)
    if features is None:
        features = [c for c in header if c not in (ID, TIME)]
        if not features and ID in header and TIME in header:
            raise DatasetError(path, "no feature columns besides vehicle_id and time_step",
                               line=1)
    check_readout_columns(path, header, features, against, extra_column, carried)
    return features


def readout_table(block: Block, features: list[str], extra_column: str | None = None,
                  carried: tuple[str, ...] = (), source: Any = None) -> pa.Table:
    """A readouts file's ``block`` typed and checked (its header checked with
    :func:`readout_features`; ``source`` as :func:`typed_table`), with each row's line
    number (``LINE``), and the ``carried`` columns as text before it."""
    types = {ID: pa.int64(), TIME: pa.float64(), **{c: pa.float64() for c in features},
             **{c: pa.string() for c in carried}}
    if extra_column is not None:
        types[extra_column] = pa.float64()
    numeric = [ID, TIME, *features, *([extra_column] if extra_column else [])]
    table = typed_table(block, types, source).select([*numeric, *carried])
    check_readout_block(block.path, table.select(numeric), block.first_line)
    return table.append_column(LINE, pa.array(np.arange(table.num_rows) + block.first_line))


def readout_order(path: Path, ids: np.ndarray, times: np.ndarray, lines: np.ndarray,
                  unit: str = "line") -> np.ndarray:
    """The permutation sorting readouts by (vehicle_id, time_step), ties kept in line
    order; a repeated (vehicle_id, time_step) is an error naming both ``lines`` (each a
    ``unit`` of ``path``: a line of a file, a record of a list)."""
    order = np.lexsort((lines, times, ids))
    ids, times = ids[order], times[order]
    same = np.flatnonzero((ids[1:] == ids[:-1]) & (times[1:] == times[:-1]))
    if same.size:
        first, second = lines[order[same[0]]], lines[order[same[0] + 1]]
        raise DatasetError(path, f"duplicate readout (vehicle_id, time_step) = ({ids[same[0]]}, "
                           f"{times[same[0]]}), also on {unit} {first}", TIME, int(second))
    return order


def sort_readouts(path: Path, table: pa.Table) -> pa.Table:
    """Rows sorted by (vehicle_id, time_step), without the ``LINE`` column (see
    :func:`readout_order`)."""
    order = readout_order(path, table.column(ID).to_numpy(), table.column(TIME).to_numpy(),
                          table.column(LINE).to_numpy())
    return table.drop_columns([LINE]).take(order)


def split_block(block: Block, features: list[str], buckets: int, prefix: Path,
                extra_column: str | None = None, carried: tuple[str, ...] = ()
                ) -> tuple[int, DatasetError | None]:
    """Parse and check one block of a readouts file, its lines numbered from
    ``block.first_line``; its rows go, with those lines, to ``{prefix}-{bucket}.arrow`` per
    vehicle bucket (:func:`~componentx.compute.bucket_of`), and the distinct rows of
    vehicle_id and the ``carried`` columns to ``{prefix}-carried.arrow`` (a task). Returns
    its lines (:func:`data_lines`), and the error that stopped it (nothing written) or
    None."""
    source = block.source()
    try:
        table = readout_table(block, features, extra_column, carried, source)
    except DatasetError as error:
        return data_lines(source), error
    if carried:
        feather.write_feather(table.group_by([ID, *carried], use_threads=False).aggregate([]),
                              f"{prefix}-carried.arrow", compression="uncompressed")
        table = table.drop_columns(list(carried))
    which = bucket_of(table.column(ID).to_numpy(), buckets)
    for bucket in np.unique(which):
        feather.write_feather(table.filter(pa.array(which == bucket)),
                              f"{prefix}-{bucket:04d}.arrow", compression="uncompressed")
    return data_lines(source), None


def sorted_bucket(path: Path, parts: list[Path], features: list[str],
                  extra_column: str | None = None) -> pa.Table:
    """One vehicle bucket of a readouts file from its blocks' parts (:func:`split_block`, in
    block order, with the file lines of :func:`split_into_buckets`): sorted by (vehicle_id,
    time_step) and checked for duplicates."""
    schema = pa.schema([(ID, pa.int64()), (TIME, pa.float64()),
                        *[(c, pa.float64()) for c in features],
                        *([(extra_column, pa.float64())] if extra_column else []),
                        (LINE, pa.int64())])
    tables = [schema.empty_table()]
    if parts:
        first_lines = np.load(Path(parts[0]).parent / FIRST_LINES)
    for part in parts:
        table = feather.read_table(part)
        shift = first_lines[int(Path(part).name.split("-")[0])] - 2  # block-line 2: its first
        tables.append(table.set_column(table.schema.get_field_index(LINE), LINE,
                                       pc.add(table.column(LINE), pa.scalar(shift))))
    return sort_readouts(path, pa.concat_tables(tables))


def bucket_parts(parts: Path, bucket: int) -> list[Path]:
    """The parts :func:`split_block` wrote for ``bucket`` into the folder ``parts``."""
    return sorted(parts.glob(f"*-{bucket:04d}.arrow"))


BLOCK_BYTES = 64 << 20  # CSV bytes parsed per task
FIRST_LINES = "first_lines.npy"  # in a parts folder: the file line of each block's first row


def split_into_buckets(client: object, path: Path, features: list[str], buckets: int,
                       parts: Path, extra_column: str | None = None,
                       carried: tuple[str, ...] = (),
                       ranges: Iterable[tuple[int, int]] | None = None) -> pa.Table | None:
    """Parse and check a readouts file in byte-range blocks (on ``client``'s cluster, or
    here), every row into its vehicle bucket's parts in the folder ``parts``
    (:func:`bucket_parts`), reading the file once. Each block numbers its rows from line 2
    and counts its lines; those counts then give each block's first line in the file
    (``parts/FIRST_LINES``), so that errors and duplicates name the file's lines. The
    blocks are :func:`line_blocks`'s, or ``ranges`` as they come (a file still arriving:
    :meth:`ArrivingFile.ranges`). Returns the distinct rows of vehicle_id and the
    ``carried`` columns (text), where there are any."""
    arriving = ranges is not None
    parts.mkdir(parents=True, exist_ok=True)
    tasks = ((Block(path, start, end), features, buckets, parts / f"{i:05d}", extra_column,
              carried) for i, (start, end) in enumerate(
        ranges if arriving else line_blocks(path, BLOCK_BYTES)))
    results = map_tasks(client, split_block, tasks if arriving else list(tasks),
                        f"{path.name} blocks")
    if not results:  # a header and no line break after it: lines ended with CR alone?
        raise DatasetError(path, "no line break after the header (lines must end with LF or "
                           "CRLF)", line=1)
    lines, errors = zip(*results, strict=True)
    first_lines = 2 + np.cumsum([0, *lines[:-1]], dtype=np.int64)
    for first, error in zip(first_lines, errors, strict=True):
        if error is not None:  # the first, in the file's order
            raise error if error.line is None else DatasetError(
                error.file, error.message, error.column, int(error.line + first - 2))
    np.save(parts / FIRST_LINES, first_lines)
    if not carried:
        return None
    empty = pa.schema([(ID, pa.int64()), *[(c, pa.string()) for c in carried]]).empty_table()
    return pa.concat_tables([empty, *(feather.read_table(part) for part in
                                      sorted(parts.glob("*-carried.arrow")))])


def _first_bad(source: Path, records: list[dict], names: list[str], allowed: set[type],
               kind: str) -> DatasetError:
    """The error of the first record whose value of one of ``names`` is not of ``allowed``."""
    row, name = next((row, name) for row, record in enumerate(records) for name in names
                     if type(record[name]) not in allowed)
    return DatasetError(source, f"value {records[row][name]!r} is not {kind}", name, row)


def readout_records(records: Any, features: list[str], source: Path
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readouts given as records (JSON objects of vehicle_id, time_step and every feature,
    by name; a feature may be null) with the checks of a file's (:func:`check_readout_block`,
    :func:`readout_order`): ``(vehicle_ids (n,) int64, times (n,) float64, values (n,
    features) float64)`` sorted by vehicle and time. Errors name the field and the record
    (``line``: its index, from 0)."""
    if not isinstance(records, list) or not records:
        raise DatasetError(source, "expected a non-empty list of readouts")
    expected = [ID, TIME, *features]
    wanted = set(expected)
    for row, record in enumerate(records):
        if not isinstance(record, dict):
            raise DatasetError(source, "a readout is an object of field: value", line=row)
        if record.keys() != wanted:
            missing = [c for c in expected if c not in record]
            extra = sorted(set(record) - wanted)
            detail = f"missing field {missing[0]!r}" if missing else \
                f"unexpected field {extra[0]!r}"
            raise DatasetError(source, detail, (missing or extra)[0], row)
    ids = list(map(operator.itemgetter(ID), records))
    if not set(map(type, ids)) <= {int}:  # no booleans, no fractions
        raise _first_bad(source, records, [ID], {int}, "an integer")
    times = list(map(operator.itemgetter(TIME), records))
    if not set(map(type, times)) <= {int, float}:
        raise _first_bad(source, records, [TIME], {int, float}, "a number")
    # tuples, made in C (time_step last, so that one feature still makes a tuple)
    rows = list(map(operator.itemgetter(*features, TIME), records))
    if not set(map(type, itertools.chain.from_iterable(rows))) <= {int, float, type(None)}:
        raise _first_bad(source, records, features, {int, float, type(None)},
                         "a number or null")
    return readout_rows(ids, times, rows, features, source)


def readout_rows(ids: list[int], times: list[float], rows: list[tuple], features: list[str],
                 source: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`readout_records` from its records' fields, their types checked: the vehicle
    ids (integers), times and rows (each a tuple of the features' values, numbers or None,
    then the time), in the records' order; the checks that need arrays follow."""
    try:
        values = np.array(rows, dtype=np.float64).reshape(len(rows), -1)[:, :-1]
        ids_array, times_array = np.array(ids, dtype=np.int64), np.array(times, np.float64)
    except OverflowError:
        raise DatasetError(source, "a number is out of range") from None
    if not (np.isfinite(times_array).all() and (times_array >= 0).all()
            and not np.isinf(values).any()):  # the file's checks name the problem
        infinite = np.flatnonzero(np.isinf(values).any(axis=0))[:1]  # the first such column
        check_readout_block(source, pa.record_batch(
            [ids_array, times_array, *values.T[infinite]],
            names=[ID, TIME, *(features[j] for j in infinite)]), 0)
    order = readout_order(source, ids_array, times_array, np.arange(len(rows)), "record")
    return ids_array[order], times_array[order], values[order]
