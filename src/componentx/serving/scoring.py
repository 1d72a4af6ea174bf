"""Score new readouts with a shipped bundle (``componentx predict``).

The readouts file goes through the checks of ingest (:mod:`componentx.data.readouts`:
columns against the bundle's, by name, numbers, inf, ids and times, duplicate readouts), read
in typed blocks; the specifications come from their own file or ride along as columns of the
readouts. A file larger than ``memory_mb`` is first split by vehicle into temporary buckets,
each then scored on its own, so memory stays bounded; the readouts' drift against training
is counted on the way (:mod:`componentx.serving.drift`). Each vehicle is scored with the
window ending at its last readout, or at the times ``--at`` gives, by the bundle's candidate
(:class:`~componentx.serving.bundle.Bundle`): a sequence model with ONNX Runtime unless
``--engine torch``, never importing torch.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from componentx.candidates.interface import Readouts, Windows
from componentx.compute import dask_client, map_tasks, positions_by_bucket
from componentx.data.layout import ID, TIME
from componentx.data.readouts import (
    ArrivingFile,
    bucket_parts,
    read_header,
    read_table,
    readout_features,
    sorted_bucket,
    split_into_buckets,
)
from componentx.data.specs import encode
from componentx.data.windowing import window_index
from componentx.decisions.rules import decide, risk_column
from componentx.devices import resolve_device
from componentx.errors import DatasetError, UserError
from componentx.serving.bundle import Bundle
from componentx.serving.drift import drift_report, increment_counts

log = logging.getLogger(__name__)
SERVING = {"workers": 1, "memory_per_worker": "auto"}  # here, unless a cluster is named


@dataclass
class ScoringReport:
    """What ``predict`` did: vehicles scored, readouts read, unknown categories per column."""

    vehicles: int = 0
    scored: int = 0
    readouts: int = 0
    buckets: int = 1
    unknown_categories: dict[str, int] = field(default_factory=dict)
    drift: dict | None = None


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
        found = (position < len(self.ids)) & (
            self.ids[np.minimum(position, len(self.ids) - 1)] == vehicles
            if len(self.ids) else False)
        if not found.all():
            missing = vehicles[~found]
            raise DatasetError(self.path, f"vehicle {missing[0]} has readouts in {readouts} but "
                               f"no specifications ({missing.size} such vehicles)", ID)
        return self.codes[position]

    def by_bucket(self, buckets: int) -> list[Specifications]:
        """The vehicles of each vehicle bucket (:func:`~componentx.compute.bucket_of`), in
        id order: what the scoring task of that bucket needs, and no more."""
        return [Specifications(self.path, self.ids[rows], self.codes[rows], self.unknown)
                for rows in positions_by_bucket(self.ids, buckets)]


def read_specifications(path: Path | None, meta: dict) -> Specifications | None:
    """The specifications file checked against the bundle: its columns, missing or repeated
    vehicle ids; coded with the bundle's vocabularies (:mod:`componentx.data.specs`), where a
    category never seen in training is counted and coded 0. None where the bundle uses no
    specifications, or the readouts carry them (``path`` None, see :func:`carried_columns`)."""
    columns = meta["spec_columns"]
    if not columns or path is None:
        return None
    header = read_header(path)
    missing = [c for c in (ID, *columns) if c not in header]
    extra = [c for c in header if c not in (ID, *columns)]
    if missing or extra:
        raise DatasetError(path, f"columns differ from the model's: missing {missing}, "
                           f"unexpected {extra}", (missing or extra)[0], 1)
    return specifications_of(read_table(path, {ID: pa.int64(), **{
        c: pa.string() for c in columns}}).to_pydict(), meta, Path(path), 2)


def carried_columns(specifications: Path | None, meta: dict, readouts: Path
                    ) -> tuple[str, ...]:
    """The specification columns that the readouts file carries: the bundle's, where it uses
    specifications and no file gives them (then the readouts must hold them, one value per
    vehicle; see :func:`carried_specifications`)."""
    columns = meta["spec_columns"]
    if specifications is not None or not columns:
        return ()
    header = read_header(readouts)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DatasetError(readouts, f"this model uses the specifications {columns}: give "
                           "them with --specifications SPECS.csv, or as columns of the "
                           "readouts (one value per vehicle)", missing[0], 1)
    return tuple(columns)


def carried_specifications(table: pa.Table, meta: dict, readouts: Path) -> Specifications:
    """Specifications carried as columns of a readouts file (``table``: vehicle_id and those
    columns as text, rows of the file in any number): one value per vehicle, on each of its
    readouts or on some and missing on the others."""
    columns = meta["spec_columns"]
    per_vehicle = table.group_by(ID, use_threads=False).aggregate(
        [(c, "count_distinct") for c in columns] + [(c, "first") for c in columns])
    for column in columns:
        many = per_vehicle.column(f"{column}_count_distinct").to_numpy() > 1
        if many.any():
            vehicle = per_vehicle.column(ID)[int(np.flatnonzero(many)[0])]
            raise DatasetError(readouts, f"vehicle {vehicle} has more than one value of the "
                               "specification", column)
    return specifications_of({ID: per_vehicle.column(ID).to_pylist(), **{
        c: per_vehicle.column(f"{c}_first").to_pylist() for c in columns}}, meta, readouts, 2)


def specifications_of(columns: Mapping[str, Sequence], meta: dict, source: Path, first: int
                      ) -> Specifications:
    """Specifications from columns (vehicle_id: integers, None where missing; the bundle's
    columns: text or None) read from ``source``, its first row being line ``first`` there:
    no missing or repeated vehicle id; coded with the bundle's vocabularies."""
    ids = list(columns[ID])
    if None in ids:
        raise DatasetError(source, "missing vehicle_id", ID, ids.index(None) + first)
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise DatasetError(source, f"vehicle {ids[row]} appears more than once", ID,
                           row + first)
    codes, unknown = encode(meta["spec_vocabularies"], columns)
    return Specifications(source, ids[order], codes[order], unknown)


def _buckets(size: int, memory_mb: float) -> int:
    return max(1, math.ceil(size / (memory_mb * 2**20)))


def loaded_bundle(bundle: Path, engine: str) -> Bundle:
    """A process's bundle, loaded once for all its buckets and requests (and again when it
    is written anew)."""
    written = (Path(bundle) / "bundle.json").stat()
    return _cached_bundle(Path(bundle), engine, (written.st_mtime_ns, written.st_ino))


@functools.lru_cache(maxsize=4)
def _cached_bundle(bundle: Path, engine: str, written: tuple[int, int]) -> Bundle:
    return Bundle.load(bundle, engine)


def feature_values(table: pa.Table, columns: list[str]) -> np.ndarray:
    """The readouts' ``columns`` of ``table`` as one (rows, len(columns)) array."""
    return np.column_stack([table.column(c).to_numpy(zero_copy_only=False)
                            for c in columns]).reshape(table.num_rows, -1)


def tables_by_bucket(table: pa.Table, buckets: int) -> list[pa.Table]:
    """The rows of a table keyed by vehicle (``--at``'s) that each bucket's task needs."""
    return [table.take(rows) for rows in positions_by_bucket(table.column(ID).to_numpy(),
                                                             buckets)]


def score_bucket(bundle: Path, engine: str, device: str, readouts: Path, parts: list[Path],
                 specs: Specifications | None, at_column: str | None,
                 at_table: pa.Table | None) -> tuple[pa.Table, int, np.ndarray, np.ndarray | None]:
    """The decisions of one vehicle bucket of a readouts file, from its parts (a task).
    Returns them, the bucket's readout count, its vehicles and its increments binned for
    drift (:func:`~componentx.serving.drift.increment_counts`, where the bundle has a
    reference)."""
    model = loaded_bundle(bundle, engine)
    meta = model.meta
    table = sorted_bucket(readouts, parts, meta["feature_columns"], at_column)
    ids, times = table.column(ID).to_numpy(), table.column(TIME).to_numpy()
    values = feature_values(table, meta["feature_columns"])
    at_rows = None if at_column is None else np.nan_to_num(
        table.column(at_column).to_numpy(zero_copy_only=False)) != 0
    scored = score_arrays(readouts, specs, ids, times, values, model, device, at_rows,
                          at_table)
    reference = meta.get("drift_reference")
    counts = increment_counts(values, times, ids, reference["edges"]) if reference else None
    return scored, len(ids), np.unique(ids), counts


def _at(at: str | None, readouts: Path) -> tuple[str | None, pa.Table | None]:
    """``--at``: a column of the readouts file, or a file of (vehicle_id, time_step)."""
    if at is None:
        return None, None
    if at in read_header(readouts):
        return at, None
    if Path(at).is_file():
        return None, read_at_file(Path(at))
    raise UserError(f"--at {at}: neither a file nor a column of {readouts}")


def predict(bundle: Path, readouts: Path, specifications: Path | None, out: Path,
            engine: str = "auto", at: str | None = None, memory_mb: float = 1024,
            device: str = "auto") -> ScoringReport:
    """Score every vehicle of ``readouts`` (:func:`score_readouts`) and write ``out`` (CSV,
    atomically)."""
    out = Path(out)
    result, report = score_readouts(bundle, readouts, specifications, engine, at, memory_mb,
                                    device, out.parent if out.parent.exists() else None)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        pacsv.write_csv(result, temporary)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return report


def score_readouts(bundle: Path, readouts: Path, specifications: Path | None,
                   engine: str = "auto", at: str | None = None, memory_mb: float = 1024,
                   device: str = "auto", scratch: Path | None = None,
                   arriving: ArrivingFile | None = None) -> tuple[pa.Table, ScoringReport]:
    """The decisions of every vehicle of ``readouts`` (its last readout, or the times of
    ``at``), sorted by vehicle and time, and what was scored. A file larger than
    ``memory_mb`` is split into vehicle buckets (the pipeline's
    :func:`~componentx.compute.bucket_of`, in temporary files in ``scratch``), scored bucket
    by bucket: on the Dask cluster of ``DASK_SCHEDULER_ADDRESS`` when there is one, else
    here, on ``device`` (:func:`~componentx.devices.resolve_device`). A file still being
    written (``arriving``, its size announced, its first block written) is split block by
    block as the blocks arrive."""
    bundle, readouts = Path(bundle), Path(readouts)
    read_header(readouts)  # a missing or unreadable file is one clear line
    meta = loaded_bundle(bundle, engine).meta  # a bundle that cannot score stops here
    device = resolve_device(device)
    at_column, at_table = _at(at, readouts)
    specifications = Path(specifications) if specifications else None
    specs = read_specifications(specifications, meta)
    carried = carried_columns(specifications, meta, readouts)
    features = readout_features(readouts, meta["feature_columns"], "the model's", at_column,
                                carried)
    size = readouts.stat().st_size if arriving is None else arriving.expected
    report = ScoringReport(buckets=_buckets(size, memory_mb))
    with tempfile.TemporaryDirectory(dir=scratch) as tmp, \
            dask_client(SERVING, report.buckets) as client:
        carried_table = split_into_buckets(client, readouts, features, report.buckets,
                                           Path(tmp), at_column, carried,
                                           None if arriving is None else arriving.ranges())
        if carried:
            specs = carried_specifications(carried_table, meta, readouts)
        report.unknown_categories = specs.unknown if specs else {}
        bucket_specs = specs.by_bucket(report.buckets) if specs else [None] * report.buckets
        bucket_at = [None] * report.buckets if at_table is None else tables_by_bucket(
            at_table, report.buckets)
        results = map_tasks(client, score_bucket, [
            (bundle, engine, device, readouts, bucket_parts(Path(tmp), bucket),
             bucket_specs[bucket], at_column, bucket_at[bucket])
            for bucket in range(report.buckets)],
            "scoring")
    parts, counts, seen, binned = zip(*results, strict=True)
    report.readouts, report.vehicles = sum(counts), sum(len(v) for v in seen)
    if meta.get("drift_reference"):
        report.drift = drift_report(meta["drift_reference"], sum(binned))
    result = pa.concat_tables(parts).sort_by([(ID, "ascending"), (TIME, "ascending")])
    _check_every_vehicle(readouts, result, at, at_table, specs, np.concatenate(seen))
    report.scored = result.num_rows
    return result, report


def _check_every_vehicle(readouts: Path, result: pa.Table, at: str | None,
                         at_table: pa.Table | None, specs: Specifications | None,
                         seen: np.ndarray) -> None:
    """Every vehicle of ``--at`` has readouts before its time, and every vehicle with
    specifications has readouts."""
    if at_table is not None:
        unknown = ~np.isin(at_table.column(ID).to_numpy(), result.column(ID).to_numpy())
        if unknown.any():
            row = int(np.flatnonzero(unknown)[0])
            raise DatasetError(Path(at), f"vehicle {at_table.column(ID)[row]} has no readouts "
                               f"at or before its time in {readouts}", ID, row + 2)
    if specs is not None:
        orphan = ~np.isin(specs.ids, seen)
        if orphan.any():
            raise DatasetError(specs.path, f"vehicle {specs.ids[orphan][0]} has specifications "
                               f"but no readouts in {readouts}", ID)


def score_arrays(readouts: Path, specs: Specifications | None, ids: np.ndarray,
                 times: np.ndarray, values: np.ndarray, model: Bundle, device: str,
                 at_rows: np.ndarray | None = None, at_table: pa.Table | None = None
                 ) -> pa.Table:
    """The decisions of readouts from ``readouts`` (``ids``, ``times`` (rows,), ``values``
    (rows, the bundle's features), sorted by vehicle and time, checked): at each vehicle's
    last readout, or at the rows ``at_rows`` marks, or at ``at_table``'s times;
    probabilities, the expected cost of each decision, the decision and the failure risk."""
    meta, cost = model.meta, model.cost_matrix
    vehicles = np.unique(ids)
    if at_rows is not None:
        ref_vehicles, ref_times = ids[at_rows], times[at_rows]
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
    probs = model.probabilities(Windows(Readouts(values, times, ids), end, length, ref_times,
                                        codes), device)
    expected = probs @ cost
    columns = {ID: ref_vehicles, TIME: ref_times,
               **{f"prob_{c}": probs[:, c] for c in range(probs.shape[1])},
               **{f"expected_cost_{c}": expected[:, c] for c in range(probs.shape[1])},
               "decision": decide(probs, meta["decision"], cost).astype(np.int64),
               risk_column(meta["class_windows"], meta["risk_class"]): model.risk(probs)}
    return pa.table(columns)
