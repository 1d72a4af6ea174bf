"""Score new readouts with a shipped bundle (``componentx predict``).

The readouts file goes through the checks of ingest (:mod:`componentx.data.readouts`:
columns and their order against the bundle's, numbers, inf, ids and times, duplicate
readouts), read in typed blocks. A file
larger than ``memory_mb`` is first split by vehicle into temporary parquet buckets, each then
scored on its own, so memory stays bounded. Each vehicle is scored with the window ending at
its last readout, or at the times ``--at`` gives. The ``onnx`` engine imports numpy, pyarrow
and onnxruntime only, never torch.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from componentx.compute import dask_client, map_tasks
from componentx.data.features import FeatureStats, model_inputs, window_inputs
from componentx.data.layout import ID, TIME
from componentx.data.readouts import (
    bucket_parts,
    first_line,
    read_header,
    read_table,
    readout_features,
    sorted_bucket,
    split_into_buckets,
)
from componentx.data.specs import encode
from componentx.data.windowing import window_index
from componentx.decisions.calibration import Calibrator
from componentx.decisions.rules import decide, failure_risk, risk_column
from componentx.errors import BundleError, DatasetError, UserError
from componentx.serving.bundle import REEXPORT, load_sequence_model, read_meta

log = logging.getLogger(__name__)
ENGINES = ("auto", "onnx", "torch")
SERVING = {"workers": 1, "memory_per_worker": "auto"}  # here, unless a cluster is named


@dataclass
class ScoringReport:
    """What ``predict`` did: vehicles scored, readouts read, unknown categories per column."""

    vehicles: int = 0
    scored: int = 0
    readouts: int = 0
    buckets: int = 1
    unknown_categories: dict[str, int] = field(default_factory=dict)


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
    vehicle ids; coded with the bundle's vocabularies (:mod:`componentx.data.specs`), where a
    category never seen in training is counted and coded 0."""
    columns = meta["spec_columns"]
    if not columns:
        return None
    if path is None:
        raise UserError(f"this model uses the specifications {columns}: give them with "
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
        raise DatasetError(path, "missing vehicle_id", ID,
                           first_line(ids.is_null().to_numpy(zero_copy_only=False)))
    ids = ids.to_numpy()
    order = np.argsort(ids, kind="stable")
    repeated = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if repeated.size:
        row = int(order[repeated[0] + 1])
        raise DatasetError(path, f"vehicle {ids[row]} appears more than once", ID, row + 2)
    codes, unknown = encode(meta["spec_vocabularies"], table.to_pydict())
    return Specifications(Path(path), ids[order], codes[order], unknown)


class Scorer:
    """Logits, calibrated probabilities and risk of a bundle's model from raw readout arrays,
    with the chosen engine (``onnx`` needs neither torch nor scikit-learn; the kernel
    candidate needs numpy and sktime's numba transform)."""

    def __init__(self, folder: Path, meta: dict, engine: str = "auto") -> None:
        if engine not in ENGINES:
            raise UserError(f"--engine must be one of {ENGINES}, got {engine!r}")
        self.meta, self.kind = meta, meta["kind"]
        self.calibrator = Calibrator.from_dict(meta["calibration"])
        self.model: Any
        if self.kind == "baseline":
            if engine not in ("auto", meta["library"]):
                raise UserError(f"this bundle is the GBDT baseline ({meta['library']}); "
                                "--engine applies to sequence bundles (use auto)")
            from componentx.gbdt.model import FittedBaseline

            self.model, self.engine = FittedBaseline.load(folder), meta["library"]
        elif self.kind == "rocket":
            if engine != "auto":
                raise UserError("this bundle is the MiniRocket candidate (numpy and sktime); "
                                "--engine applies to sequence bundles (use auto)")
            from componentx.rocket.model import FittedRocket

            self.model, self.engine = FittedRocket.load(folder), "rocket"
        elif engine in ("auto", "onnx"):
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            try:
                self.model = onnxruntime.InferenceSession(str(folder / "model.onnx"), options,
                                                          providers=["CPUExecutionProvider"])
            except Exception as error:  # onnxruntime's own types for a damaged file
                reason = (str(error).strip().splitlines() or [""])[0][:200]
                raise BundleError(f"{folder / 'model.onnx'} cannot be loaded ({reason}); "
                                  f"{REEXPORT}") from None
            self.engine = "onnx"
        else:
            self.model, self.engine = load_sequence_model(folder), "torch"

    def logits(self, values: np.ndarray, times: np.ndarray, ids: np.ndarray, end: np.ndarray,
               length: np.ndarray, ref_time: np.ndarray, specs: np.ndarray,
               batch_size: int = 1024) -> np.ndarray:
        """Logits (windows, classes) of the windows ``end``/``length``/``ref_time`` over the
        readouts ``values`` (rows, features), ``times`` and ``ids`` (sorted by vehicle and
        time), with the windows' specification codes ``specs``."""
        meta = self.meta
        if self.kind == "baseline":
            import pandas as pd

            from componentx.gbdt.features import summary_features

            features = summary_features(values, times, ids,
                                        pd.DataFrame({"end_row": end, "length": length}),
                                        meta["feature_columns"], meta["k"], specs,
                                        meta["spec_columns"], meta["window_stats"])
            return self.model.logits(features, meta["num_classes"])
        inputs = model_inputs(values, times, ids, FeatureStats(**meta["features"]))
        padded_times = np.r_[times, 0.0]
        out = []
        for start in range(0, len(end), batch_size):
            part = slice(start, start + batch_size)
            x = window_inputs(inputs, padded_times, end[part], length[part], ref_time[part],
                              meta["window_size"])
            out.append(self.model.logits(x, length[part], specs[part]) if self.kind == "rocket"
                       else self._forward(x, length[part], specs[part]))
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

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Calibrated probabilities, with the bundle's calibration."""
        return self.calibrator.probabilities(logits)

    def risk(self, probs: np.ndarray) -> np.ndarray:
        """:func:`~componentx.decisions.rules.failure_risk` at the bundle's ``risk_class``."""
        return failure_risk(probs, self.meta["risk_class"])


def _buckets(path: Path, memory_mb: float) -> int:
    return max(1, math.ceil(path.stat().st_size / (memory_mb * 2**20)))


def _scorer(bundle: Path, engine: str) -> Scorer:
    """A process's scorer of a bundle, loaded once for all its buckets (and again when the
    bundle is written anew)."""
    return _cached_scorer(bundle, engine, (bundle / "bundle.json").stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _cached_scorer(bundle: Path, engine: str, written: int) -> Scorer:
    return Scorer(bundle, read_meta(bundle), engine)


def score_bucket(bundle: Path, engine: str, readouts: Path, parts: list[Path],
                 specs: Specifications | None, at_column: str | None,
                 at_table: pa.Table | None) -> tuple[pa.Table, int, np.ndarray]:
    """The decisions of one vehicle bucket of a readouts file, from its parts (a task).
    Returns them, the bucket's readout count and its vehicles."""
    scorer = _scorer(bundle, engine)
    table = sorted_bucket(readouts, parts, scorer.meta["feature_columns"], at_column)
    ids = table.column(ID).to_numpy()
    scored = _score_table(readouts, specs, table, scorer,
                          np.asarray(scorer.meta["cost_matrix"], dtype=float), at_column,
                          at_table)
    return scored, len(ids), np.unique(ids)


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
            engine: str = "auto", at: str | None = None, memory_mb: float = 1024
            ) -> ScoringReport:
    """Score every vehicle of ``readouts`` and write ``out`` (CSV, atomically). A file larger
    than ``memory_mb`` is split into vehicle buckets (the pipeline's
    :func:`~componentx.compute.bucket_of`), scored bucket by bucket: on the Dask cluster of
    ``DASK_SCHEDULER_ADDRESS`` when there is one, else here."""
    bundle, readouts, out = Path(bundle), Path(readouts), Path(out)
    read_header(readouts)  # a missing or unreadable file is one clear line
    meta = read_meta(bundle)
    _scorer(bundle, engine)  # a bundle or engine that cannot score stops before any work
    at_column, at_table = _at(at, readouts)
    specs = read_specifications(Path(specifications) if specifications else None, meta)
    features = readout_features(readouts, meta["feature_columns"], "the model's", at_column)
    report = ScoringReport(buckets=_buckets(readouts, memory_mb),
                           unknown_categories=specs.unknown if specs else {})
    with tempfile.TemporaryDirectory(dir=out.parent if out.parent.exists() else None) as tmp, \
            dask_client(SERVING, report.buckets) as client:
        split_into_buckets(client, readouts, features, report.buckets, Path(tmp), at_column)
        results = map_tasks(client, score_bucket, [
            (bundle, engine, readouts, bucket_parts(Path(tmp), bucket), specs, at_column,
             at_table) for bucket in range(report.buckets)], "scoring")
    parts, counts, seen = zip(*results, strict=True)
    report.readouts, report.vehicles = sum(counts), sum(len(v) for v in seen)
    result = pa.concat_tables(parts).sort_by([(ID, "ascending"), (TIME, "ascending")])
    _check_every_vehicle(readouts, result, at, at_table, specs, np.concatenate(seen))
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


def _score_table(readouts: Path, specs: Specifications | None, table: pa.Table,
                 scorer: Scorer, cost: np.ndarray, at_column: str | None,
                 at_table: pa.Table | None) -> pa.Table:
    """The decisions of one vehicle bucket's (sorted) readouts."""
    meta = scorer.meta
    ids, times = table.column(ID).to_numpy(), table.column(TIME).to_numpy()
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False)
                              for c in meta["feature_columns"]])
    vehicles = np.unique(ids)
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
    probs = scorer.probabilities(scorer.logits(values, times, ids, end, length, ref_times, codes))
    expected = probs @ cost
    columns = {ID: ref_vehicles, TIME: ref_times,
               **{f"prob_{c}": probs[:, c] for c in range(probs.shape[1])},
               **{f"expected_cost_{c}": expected[:, c] for c in range(probs.shape[1])},
               "decision": decide(probs, meta["decision"], cost).astype(np.int64),
               risk_column(meta["class_windows"], meta["risk_class"]): scorer.risk(probs)}
    return pa.table(columns)

