"""Score new readouts with a shipped bundle (``componentx predict``).

The readouts file goes through the same checks as ingest (columns and their order against
the bundle's, numbers, inf, ids and times, duplicate readouts), read in typed blocks. A file
larger than ``memory_mb`` is first split by vehicle into temporary parquet buckets, each then
scored on its own, so memory stays bounded. Each vehicle is scored with the window ending at
its last readout, or at the times ``--at`` gives. The ``onnx`` engine imports numpy, pyarrow
and onnxruntime only, never torch.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from componentx.bundle import read_meta
from componentx.calibration import Calibrator
from componentx.features import FeatureStats, model_inputs, window_inputs
from componentx.schema import (
    ID,
    READ_BLOCK_BYTES,
    TIME,
    DatasetError,
    locate_bad_value,
    read_header,
    read_table,
)
from componentx.windowing import window_index

log = logging.getLogger(__name__)
ENGINES = ("auto", "onnx", "torch")
LINE = "__line"


@dataclass
class ScoringReport:
    """What ``predict`` did: vehicles scored, readouts read, unknown categories per column."""

    vehicles: int = 0
    scored: int = 0
    readouts: int = 0
    buckets: int = 1
    unknown_categories: dict[str, int] = field(default_factory=dict)


def check_header(path: Path, header: list[str], features: list[str], at_column: str | None
                 ) -> None:
    """The readouts file must hold vehicle_id, time_step and the bundle's features, in the
    bundle's order (plus the ``--at`` column when one is named)."""
    expected = [ID, TIME, *features]
    present = [c for c in header if c != at_column]
    missing = [c for c in expected if c not in present]
    extra = [c for c in present if c not in expected]
    if missing or extra:
        detail = ", ".join(filter(None, [f"missing {missing}" if missing else "",
                                         f"unexpected {extra}" if extra else ""]))
        raise DatasetError(path, f"columns differ from the model's: {detail}",
                           (missing or extra)[0], 1)
    if present != expected:
        first = next(i for i, (a, b) in enumerate(zip(present, expected, strict=True)) if a != b)
        raise DatasetError(path, f"columns are in another order than the model's: column "
                           f"{first + 1} is '{present[first]}', the model expects "
                           f"'{expected[first]}'", present[first], 1)
    if at_column is not None and at_column not in header:
        raise DatasetError(path, f"no column '{at_column}' (given as --at)", at_column, 1)


def read_blocks(path: Path, features: list[str], at_column: str | None
                ) -> Iterator[pa.RecordBatch]:
    """Typed, validated blocks of the readouts file, each with its rows' line numbers."""
    header = read_header(path)
    check_header(path, header, features, at_column)
    types = {ID: pa.int64(), TIME: pa.float64(), **{c: pa.float64() for c in features}}
    if at_column:
        types[at_column] = pa.float64()
    options = (pacsv.ReadOptions(block_size=READ_BLOCK_BYTES), pacsv.ParseOptions(),
               pacsv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                    null_values=["", "NaN", "nan", "NA", "null"]))
    offset = 0
    try:
        reader = pacsv.open_csv(path, *options)  # reads the first block already
        for batch in reader:
            _check_block(path, batch, offset)
            lines = pa.array(np.arange(offset, offset + batch.num_rows) + 2)
            yield pa.RecordBatch.from_arrays([*batch.columns, lines],
                                             names=[*batch.schema.names, LINE])
            offset += batch.num_rows
    except pa.ArrowInvalid as error:
        match = re.search(r"CSV column #(\d+)", str(error))
        if match is None:
            raise DatasetError(path, f"cannot be parsed as CSV: {error}") from None
        column = header[int(match.group(1))]
        raise locate_bad_value(path, column, column == ID) from None


def _check_block(path: Path, batch: pa.RecordBatch, offset: int) -> None:
    for name in batch.schema.names:
        column = batch.column(name)
        values = column.to_numpy(zero_copy_only=False)
        if name in (ID, TIME) and column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise DatasetError(path, "missing value (NaN or empty) is not allowed", name,
                               offset + row + 2)
        if values.dtype.kind == "f":
            bad = np.isinf(values) | (np.isnan(values) if name in (ID, TIME) else False)
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                raise DatasetError(path, f"{values[row]} is not allowed", name, offset + row + 2)
    times = batch.column(TIME).to_numpy()
    if (times < 0).any():
        row = int(np.flatnonzero(times < 0)[0])
        raise DatasetError(path, f"negative time_step {times[row]}", TIME, offset + row + 2)


def sorted_readouts(path: Path, table: pa.Table) -> pa.Table:
    """Rows sorted by vehicle and time; a repeated (vehicle_id, time_step) names both lines."""
    table = table.sort_by([(ID, "ascending"), (TIME, "ascending")])
    ids, times = table.column(ID).to_numpy(), table.column(TIME).to_numpy()
    same = np.flatnonzero((ids[1:] == ids[:-1]) & (times[1:] == times[:-1]))
    if same.size:
        lines = sorted(table.column(LINE).to_numpy()[[same[0], same[0] + 1]].tolist())
        raise DatasetError(path, f"duplicate readout (vehicle_id, time_step) = ({ids[same[0]]}, "
                           f"{times[same[0]]}), also on line {lines[0]}", TIME, lines[1])
    return table


def read_at_file(path: Path) -> pa.Table:
    """``--at`` as a file of (vehicle_id, time_step) to score at."""
    header = read_header(path)
    missing = [c for c in (ID, TIME) if c not in header]
    if missing:
        raise DatasetError(path, f"missing column(s) {missing}", missing[0], 1)
    table = read_table(path, {ID: pa.int64(), TIME: pa.float64()}).select([ID, TIME])
    for name in (ID, TIME):
        values = table.column(name)
        bad = values.is_null().to_numpy(zero_copy_only=False)
        if name == TIME:
            bad |= ~np.isfinite(values.to_numpy(zero_copy_only=False))
        if bad.any():
            raise DatasetError(path, "missing or infinite value", name,
                               int(np.flatnonzero(bad)[0]) + 2)
    return table


@dataclass
class Specifications:
    """Specification codes per vehicle (bundle vocabularies; an unknown category is 0)."""

    path: Path
    ids: np.ndarray
    codes: np.ndarray
    unknown: dict[str, int]

    def codes_for(self, vehicles: np.ndarray, readouts: Path) -> np.ndarray:
        position = np.searchsorted(self.ids, vehicles)
        found = (position < len(self.ids)) & (self.ids[np.minimum(position, len(self.ids) - 1)]
                                              == vehicles)
        if not found.all():
            missing = vehicles[~found]
            raise DatasetError(self.path, f"vehicle {missing[0]} has readouts in {readouts} but "
                               f"no specifications ({missing.size} such vehicles)", ID)
        return self.codes[position]


def read_specifications(path: Path | None, meta: dict) -> Specifications | None:
    """The specifications file checked against the bundle: its columns, missing or repeated
    vehicle ids; categories never seen in training are counted and coded 0."""
    columns = meta["spec_columns"]
    if not columns:
        return None
    if path is None:
        raise ValueError(f"this model uses the specifications {columns}: give them with "
                         "--specifications SPECS.csv")
    header = read_header(path)
    missing = [c for c in (ID, *columns) if c not in header]
    extra = [c for c in header if c not in (ID, *columns)]
    if missing or extra:
        raise DatasetError(path, f"columns differ from the model's: missing {missing}, "
                           f"unexpected {extra}", (missing or extra)[0], 1)
    table = read_table(path, {ID: pa.int64(), **{c: pa.string() for c in columns}})
    ids = table.column(ID)
    if ids.null_count:
        row = int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0])
        raise DatasetError(path, "missing vehicle_id", ID, row + 2)
    ids = ids.to_numpy()
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise DatasetError(path, f"vehicle {ids[row]} appears more than once", ID, row + 2)
    codes = np.zeros((len(ids), len(columns)), dtype=np.int64)
    unknown = {}
    for j, column in enumerate(columns):
        vocabulary = np.asarray(meta["spec_vocabularies"][column], dtype=object)
        values = table.column(column).to_numpy(zero_copy_only=False).astype(object)
        position = np.searchsorted(vocabulary, values.astype(str)) if len(vocabulary) else \
            np.zeros(len(values), dtype=np.int64)
        known = (values != None) & (position < len(vocabulary))  # noqa: E711 (elementwise)
        known[known] = vocabulary[position[known]] == values[known].astype(str)
        codes[:, j] = np.where(known, position + 1, 0)
        unknown[column] = int(((values != None) & ~known).sum())  # noqa: E711
    return Specifications(Path(path), ids[order], codes[order], unknown)


class Scorer:
    """Logits of a bundle's model from numpy inputs, with the chosen engine."""

    def __init__(self, folder: Path, meta: dict, engine: str) -> None:
        if engine not in ENGINES:
            raise ValueError(f"--engine must be one of {ENGINES}, got {engine!r}")
        self.meta, self.kind = meta, meta["kind"]
        if self.kind == "baseline":
            if engine not in ("auto", meta["library"]):
                raise ValueError(f"this bundle is the GBDT baseline ({meta['library']}); "
                                 "--engine applies to sequence bundles (use auto)")
            from componentx.baseline import FittedBaseline

            self.model, self.engine = FittedBaseline.load(folder), meta["library"]
        elif engine in ("auto", "onnx"):
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            self.model = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                      providers=["CPUExecutionProvider"])
            self.engine = "onnx"
        else:
            import torch

            from componentx.models import ModelConfig, build_model

            saved = torch.load(folder / "model.pt", map_location="cpu", weights_only=False)
            self.model = build_model(ModelConfig(**saved["config"]))
            self.model.load_state_dict(saved["model"])
            self.model.eval()
            self.engine = "torch"

    def logits(self, values: np.ndarray, times: np.ndarray, ids: np.ndarray, end: np.ndarray,
               length: np.ndarray, ref_time: np.ndarray, specs: np.ndarray,
               batch_size: int = 1024) -> np.ndarray:
        meta = self.meta
        if self.kind == "baseline":
            import pandas as pd

            from componentx.baseline import summary_features

            features = summary_features(values, times, ids,
                                        pd.DataFrame({"end_row": end, "length": length}),
                                        meta["feature_columns"], meta["k"], specs,
                                        meta["spec_columns"], meta.get("window_stats", False))
            return self.model.logits(features, meta["num_classes"])
        inputs = model_inputs(values, times, ids, FeatureStats(**meta["features"]))
        padded_times = np.r_[times, 0.0]
        out = []
        for start in range(0, len(end), batch_size):
            part = slice(start, start + batch_size)
            x = window_inputs(inputs, padded_times, end[part], length[part], ref_time[part],
                              meta["window_size"])
            out.append(self._forward(x, length[part], specs[part]))
        return np.concatenate(out).astype(np.float64) if out else np.zeros(
            (0, meta["num_classes"]))

    def _forward(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        if self.engine == "onnx":
            return self.model.run(None, {"x": x, "lengths": lengths.astype(np.int64),
                                         "specs": specs.astype(np.int64)})[0]
        import torch

        with torch.no_grad():
            return self.model(torch.from_numpy(x), torch.from_numpy(lengths.astype(np.int64)),
                              torch.from_numpy(specs.astype(np.int64))).numpy()


def _buckets(path: Path, memory_mb: float) -> int:
    return max(1, math.ceil(path.stat().st_size / (memory_mb * 2**20)))


def _partitioned(path: Path, blocks: Iterator[pa.RecordBatch], buckets: int, folder: Path
                 ) -> Iterator[pa.Table]:
    """All rows at once (one bucket), or the rows of each vehicle bucket in turn, spilled to
    parquet files in ``folder`` first."""
    if buckets == 1:
        yield pa.Table.from_batches(list(blocks))
        return
    writers: dict[int, pq.ParquetWriter] = {}
    for batch in blocks:
        which = batch.column(ID).to_numpy() % buckets
        for bucket in np.unique(which):
            part = batch.filter(pa.array(which == bucket))
            if bucket not in writers:
                writers[bucket] = pq.ParquetWriter(folder / f"{bucket}.parquet", part.schema)
            writers[bucket].write_batch(part)
    for writer in writers.values():
        writer.close()
    for bucket in sorted(writers):
        yield pq.read_table(folder / f"{bucket}.parquet")


def predict(bundle: Path, readouts: Path, specifications: Path | None, out: Path,
            engine: str = "auto", at: str | None = None, memory_mb: float = 1024
            ) -> ScoringReport:
    """Score every vehicle of ``readouts`` and write ``out`` (CSV, atomically)."""
    bundle, readouts, out = Path(bundle), Path(readouts), Path(out)
    meta = read_meta(bundle)
    scorer = Scorer(bundle, meta, engine)
    at_table = read_at_file(Path(at)) if at and Path(at).is_file() else None
    at_column = at if at and at_table is None else None
    specs = read_specifications(Path(specifications) if specifications else None, meta)
    report = ScoringReport(buckets=_buckets(readouts, memory_mb),
                           unknown_categories=specs.unknown if specs else {})
    calibrator = Calibrator.from_dict(meta["calibration"])
    cost = np.asarray(meta["cost_matrix"], dtype=float)
    parts, seen = [], []
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp:
        blocks = read_blocks(readouts, meta["feature_columns"], at_column)
        for table in _partitioned(readouts, blocks, report.buckets, Path(tmp)):
            seen.append(np.unique(table.column(ID).to_numpy()))
            parts.append(_score_table(readouts, specs, table, meta, scorer, calibrator, cost,
                                      at_column, at_table, report))
    result = pa.concat_tables(parts).sort_by([(ID, "ascending"), (TIME, "ascending")])
    if at_table is not None:
        unknown = ~np.isin(at_table.column(ID).to_numpy(), result.column(ID).to_numpy())
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DatasetError(Path(at), f"vehicle {at_table.column(ID)[row]} has no readouts "
                               f"at or before its time in {readouts}", ID, row + 2)
    if specs is not None:
        orphan = ~np.isin(specs.ids, np.concatenate(seen))
        if orphan.any():
            raise DatasetError(specs.path, f"vehicle {specs.ids[orphan][0]} has specifications "
                               f"but no readouts in {readouts}", ID)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        pacsv.write_csv(result, temporary)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    report.scored = result.num_rows
    return report


def _score_table(readouts: Path, specs: Specifications | None, table: pa.Table, meta: dict,
                 scorer: Scorer, calibrator: Calibrator, cost: np.ndarray,
                 at_column: str | None, at_table: pa.Table | None, report: ScoringReport
                 ) -> pa.Table:
    table = sorted_readouts(readouts, table)
    ids, times = table.column(ID).to_numpy(), table.column(TIME).to_numpy()
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False)
                              for c in meta["feature_columns"]])
    vehicles = np.unique(ids)
    report.readouts += len(ids)
    report.vehicles += len(vehicles)
    if at_column is not None:
        chosen = np.nan_to_num(table.column(at_column).to_numpy(zero_copy_only=False)) != 0
        ref_vehicles, ref_times = ids[chosen], times[chosen]
    elif at_table is not None:
        mine = np.isin(at_table.column(ID).to_numpy(), vehicles)
        ref_vehicles = at_table.column(ID).to_numpy()[mine]
        ref_times = at_table.column(TIME).to_numpy()[mine]
    else:
        last = np.r_[ids[1:] != ids[:-1], True]
        ref_vehicles, ref_times = ids[last], times[last]
    end, length = window_index(ids, times, ref_vehicles, ref_times, meta["window_size"])
    scored = length > 0  # --at times before a vehicle's first readout have nothing to score
    end, length, ref_vehicles, ref_times = (end[scored], length[scored], ref_vehicles[scored],
                                            ref_times[scored])
    if specs is not None:
        specs.codes_for(vehicles, readouts)  # every vehicle with readouts has them
        codes = specs.codes_for(ref_vehicles, readouts)
    else:
        codes = np.zeros((len(ref_vehicles), 0), dtype=np.int64)
    logits = scorer.logits(values, times, ids, end, length, ref_times, codes)
    probs = calibrator.probabilities(logits)
    expected = probs @ cost
    decision = expected.argmin(axis=1) if meta["decision"] == "expected_cost" else \
        probs.argmax(axis=1)
    windows = meta["class_windows"]
    risk_name = (f"risk_failure_within_{max(windows):g}" if windows
                 else f"risk_class_{meta['risk_class']}_or_higher")
    columns = {ID: ref_vehicles, TIME: ref_times,
               **{f"prob_{c}": probs[:, c] for c in range(probs.shape[1])},
               **{f"expected_cost_{c}": expected[:, c] for c in range(probs.shape[1])},
               "decision": decision.astype(np.int64),
               risk_name: probs[:, meta["risk_class"]:].sum(axis=1)}
    return pa.table(columns)

