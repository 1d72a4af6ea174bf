"""What ``componentx serve`` keeps live: the bundle, reloaded when it is exported or promoted
anew, and the fleet it shows, every readout scored, rescored when its readouts or the bundle
change. Both are swapped whole, so a request sees one bundle and one fleet from start to end.

**Triage** of a vehicle, at its latest readout:

- ``act now``: the bundle's alarm is on (risk at or above ``tau_on`` for ``min_consecutive``
  readouts in a row, not since fallen below ``tau_off``: the thresholds the fleet view picked
  on the holdout for ``fleet.target_fa`` false alarms per 1000 time units) and the
  cost-minimising decision is a failure class;
- ``watch``: not that, but the alarm is on, or the risk is at least ``tau_off``;
- ``fine``: neither.

A bundle without an alarm (no fleet holdout to pick its thresholds on) has no ``act now``; it
puts on ``watch`` the vehicles whose decision is a failure class.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from componentx.candidates.interface import PipelineData, Readouts, Windows
from componentx.data.layout import ID, TIME
from componentx.data.readouts import Block, readout_features, readout_table, sort_readouts
from componentx.data.windowing import window_index
from componentx.decisions.alarms import Fleet, alarm_state
from componentx.decisions.rules import decide
from componentx.errors import BundleError, UserError
from componentx.serving.bundle import Bundle
from componentx.serving.drift import drift_report, increment_counts
from componentx.serving.scoring import (
    carried_columns,
    carried_specifications,
    feature_values,
    loaded_bundle,
    read_specifications,
)

log = logging.getLogger(__name__)
TRIAGE = ("act now", "watch", "fine")


class LiveBundle:
    """The served bundle: loaded once as data, loaded again when its ``bundle.json`` changes
    (export and promote write the folder anew), swapped whole; while a folder is being
    replaced, or holds a bundle that cannot be read, the one loaded before keeps serving.
    The copy is :func:`~componentx.serving.scoring.loaded_bundle`'s, which scoring a CSV
    body uses too."""

    def __init__(self, folder: Path, engine: str = "auto") -> None:
        self.folder, self.engine = Path(folder), engine
        self.lock = threading.Lock()
        self.bundle = loaded_bundle(self.folder, engine)
        self.stamp = self._stamp()
        self.loads = 1

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = (self.folder / "bundle.json").stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_ino

    def current(self) -> Bundle:
        stamp = self._stamp()
        if stamp is None or stamp == self.stamp:
            return self.bundle
        with self.lock:
            if stamp != self.stamp:
                try:
                    self.bundle = loaded_bundle(self.folder, self.engine)
                    self.loads += 1
                    log.info("reloaded %s (%s)", self.folder, self.bundle.meta["kind"])
                except (UserError, OSError) as error:
                    log.warning("kept the bundle loaded before: %s", error)
                self.stamp = stamp
        return self.bundle


@dataclass
class FleetReadouts:
    """Every readout of a fleet (sorted by vehicle and time), each vehicle's specification
    codes, and the readouts' raw values for drift."""

    values: np.ndarray  # (rows, features) float64
    times: np.ndarray
    vehicles: np.ndarray
    codes: np.ndarray  # (rows, n_specs): each readout's vehicle's

    def windows(self, rows: np.ndarray, size: int) -> Windows:
        """The windows ending at the readouts ``rows``."""
        end, length = window_index(self.vehicles, self.times, self.vehicles[rows],
                                   self.times[rows], size)
        return Windows(Readouts(self.values, self.times, self.vehicles), end, length,
                       self.times[rows], self.codes[rows])


def folder_readouts(folder: Path, meta: dict) -> FleetReadouts:
    """The readouts of a folder (``*readouts*.csv``, and ``*specifications*.csv`` where the
    bundle uses specifications and the readouts do not carry them), checked as
    ``componentx predict`` checks them."""
    found = {kind: sorted(Path(folder).glob(f"*{kind}*.csv"))
             for kind in ("readouts", "specifications")}
    if len(found["readouts"]) != 1 or len(found["specifications"]) > 1:
        names = [p.name for paths in found.values() for p in paths]
        raise UserError(f"--readouts {folder}: expected one *readouts*.csv file (and at most "
                        f"one *specifications*.csv), found {names}")
    path = found["readouts"][0]
    specs_file = found["specifications"][0] if found["specifications"] else None
    specs = read_specifications(specs_file, meta)
    carried = carried_columns(specs_file, meta, path)
    features = readout_features(path, meta["feature_columns"], "the model's", None, carried)
    table = sort_readouts(path, readout_table(Block.whole(path), features, carried=carried))
    if carried:
        specs = carried_specifications(table.select([ID, *carried]), meta, path)
    vehicles = table.column(ID).to_numpy()
    codes = (specs.codes_for(vehicles, path) if specs is not None
             else np.zeros((len(vehicles), 0), dtype=np.int64))
    return FleetReadouts(feature_values(table, meta["feature_columns"]),
                         table.column(TIME).to_numpy(), vehicles, codes)


def holdout_readouts(data: PipelineData) -> FleetReadouts:
    """The pipeline's fleet holdout (train vehicles no model saw): every readout, a window
    ending at each."""
    holdout = data.labelled("fleet")
    parts = [data.bucket_windows(split, bucket, holdout.index.iloc[rows])
             for split, bucket, rows in holdout.groups()]
    if not parts:
        raise UserError("the pipeline has no fleet holdout (fleet.holdout 0, or labels without "
                        "time to event): give a folder of readouts with --readouts")
    values = np.concatenate([w.readouts.values for w in parts])
    offsets = np.cumsum([0, *(len(w.readouts.times) for w in parts[:-1])])
    vehicles = np.concatenate([w.readouts.vehicles for w in parts])
    codes = np.zeros((len(vehicles), parts[0].specs.shape[1]), dtype=np.int64)
    for offset, part in zip(offsets, parts, strict=True):
        codes[offset + part.end_row - 1] = part.specs
    times = np.concatenate([w.readouts.times for w in parts])
    order = np.lexsort((times, vehicles))
    return FleetReadouts(values[order], times[order], vehicles[order], codes[order])


@dataclass
class FleetSnapshot:
    """A fleet scored by one bundle: per readout the decision, risk and alarm state; per
    vehicle (``summary``, riskiest first) its latest readout's; the fleet's expected cost
    against always deciding 0; drift against the bundle's reference."""

    readouts: FleetReadouts
    decisions: np.ndarray
    risk: np.ndarray
    alarm: np.ndarray
    summary: list[dict]
    counts: dict[str, int]
    expected_cost: float
    expected_cost_always_0: float
    drift: dict | None
    bundle: Bundle

    def vehicle_rows(self, vehicle: int) -> np.ndarray:
        """The rows of ``vehicle``'s readouts; KeyError for a vehicle not in the fleet."""
        rows = np.flatnonzero(self.readouts.vehicles == vehicle)
        if not len(rows):
            raise KeyError(vehicle)
        return rows

    def search(self, query: str, page: int, size: int) -> tuple[list[dict], int, int, int]:
        """The vehicles whose id starts with ``query``, page ``page`` of ``size`` (clamped to
        the pages there are): those rows, how many matched, the page and the page count."""
        rows = [row for row in self.summary if str(row["vehicle_id"]).startswith(query)]
        pages = max(1, -(-len(rows) // size))
        page = min(max(page, 1), pages)
        return rows[(page - 1) * size: page * size], len(rows), page, pages


def triage(alarm_on: bool, decision: int, risk: float, alarm: dict | None) -> str:
    """The vehicle's triage at a readout (see the module)."""
    if alarm is None:
        return "watch" if decision > 0 else "fine"
    if alarm_on and decision > 0:
        return "act now"
    return "watch" if alarm_on or risk >= alarm["tau_off"] else "fine"


def score_fleet(bundle: Bundle, readouts: FleetReadouts, device: str = "cpu") -> FleetSnapshot:
    """Every readout of ``readouts`` scored by ``bundle``, and the per-vehicle summary."""
    meta, cost = bundle.meta, bundle.cost_matrix
    rows = np.arange(len(readouts.vehicles))
    probs = np.concatenate([bundle.probabilities(readouts.windows(part, meta["window_size"]),
                                                 device)
                            for part in np.array_split(rows, max(1, len(rows) // 4096))])
    decisions = decide(probs, meta["decision"], cost)
    risk = bundle.risk(probs)
    alarm = meta.get("alarm")
    starts = np.r_[0, np.flatnonzero(readouts.vehicles[1:] != readouts.vehicles[:-1]) + 1]
    last = np.r_[starts[1:], len(rows)] - 1
    fleet = Fleet(readouts.vehicles, readouts.times, np.zeros(len(starts), dtype=bool),
                  readouts.times[last])
    state = (alarm_state(fleet, risk, alarm["tau_on"], alarm["tau_off"],
                         alarm["min_consecutive"]) if alarm else np.zeros(len(rows), dtype=bool))
    expected = probs @ cost
    summary = [{"vehicle_id": int(readouts.vehicles[i]), "time_step": float(readouts.times[i]),
                "risk": float(risk[i]), "decision": int(decisions[i]),
                "expected_cost": float(expected[i, decisions[i]]),
                "triage": triage(bool(state[i]), int(decisions[i]), float(risk[i]), alarm),
                "readouts": int(i - start + 1)}
               for start, i in zip(starts, last, strict=True)]
    summary.sort(key=lambda row: (-row["risk"], row["vehicle_id"]))
    counts = {name: sum(row["triage"] == name for row in summary) for name in TRIAGE}
    reference = meta.get("drift_reference")
    return FleetSnapshot(
        readouts, decisions, risk, state, summary, counts,
        float(sum(row["expected_cost"] for row in summary)), float(expected[last, 0].sum()),
        drift_report(reference, increment_counts(readouts.values, readouts.times,
                                                 readouts.vehicles, reference["edges"]))
        if reference else None, bundle)


class LiveFleet:
    """The fleet the page shows, scored by the live bundle: a folder of readouts (rescored
    when its files change) or the pipeline's holdout; scoring runs in a background thread,
    the previous snapshot serving until the new one is whole."""

    def __init__(self, bundle: LiveBundle, folder: Path | None, data: PipelineData | None,
                 device: str = "cpu") -> None:
        self.bundle, self.folder, self.data, self.device = bundle, folder, data, device
        self.snapshot: FleetSnapshot | None = None
        self.error: str | None = None
        self.key: tuple | None = None
        self.lock = threading.Lock()
        self.worker: threading.Thread | None = None

    def _source_key(self) -> tuple | None:
        """What the snapshot depends on: the folder's files and the bundle; None while a
        file is being replaced."""
        try:
            files = () if self.folder is None else tuple(
                (p.name, stat.st_mtime_ns, stat.st_size)
                for p in sorted(Path(self.folder).glob("*.csv")) for stat in [p.stat()])
        except OSError:
            return None
        return files, id(self.bundle.current())

    def refresh(self, wait: bool = False) -> None:
        """Rescore in the background when the readouts or the bundle changed (``wait``:
        until done)."""
        if self.folder is None and self.data is None:
            return
        key = self._source_key()
        with self.lock:
            idle = self.worker is None or not self.worker.is_alive()
            if key is not None and key != self.key and idle:
                self.key = key
                self.worker = threading.Thread(target=self._score, name="componentx-fleet",
                                               daemon=True)
                self.worker.start()
            worker = self.worker
        if wait and worker is not None:
            worker.join()

    def _score(self) -> None:
        bundle = self.bundle.current()
        try:
            readouts = (folder_readouts(self.folder, bundle.meta) if self.folder is not None
                        else holdout_readouts(self.data))
            snapshot = score_fleet(bundle, readouts, self.device)
        except (UserError, BundleError, OSError) as error:
            log.warning("the fleet could not be scored: %s", error)
            self.error = str(error)
            return
        except Exception as error:  # a bug: said on the page and logged, never silent
            log.exception("the fleet could not be scored")
            self.error = f"{type(error).__name__}: {error}"
            return
        self.snapshot, self.error = snapshot, None
        log.info("scored the fleet: %d vehicles, %d readouts", len(snapshot.summary),
                 len(readouts.vehicles))


def describe_source(folder: Path | None, data: PipelineData | None) -> str:
    """What the fleet page shows, in words."""
    if folder is not None:
        return f"the readouts in {os.fspath(folder)}"
    if data is not None:
        return "the pipeline's fleet holdout (train vehicles no model saw)"
    return "no fleet (give --readouts DIR)"
