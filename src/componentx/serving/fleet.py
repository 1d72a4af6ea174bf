"""The fleet view: every fitted candidate run at every readout of the fleet holdout's vehicles
(train vehicles no model saw), exactly as its bundle will run in service (the same model files,
read the same way, and calibration), and what its alarms would do; the alarm thresholds it
picks go into the bundles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData, Windows
from componentx.candidates.registry import load_candidate, loaded_candidate
from componentx.compute import dask_client
from componentx.decisions.alarms import Fleet, fleet_report
from componentx.decisions.calibration import Calibrator
from componentx.decisions.rules import risk_window
from componentx.devices import resolve_device
from componentx.serving.bundle import Bundle


@dataclass
class FleetView:
    """Every readout of the holdout scored by each model: ``risks`` per model (rows of
    ``fleet``), and per model the alarm ``report``, the detection curve of the threshold sweep
    and the lead times of the detected repairs."""

    fleet: Fleet
    horizon: float
    risks: dict[str, np.ndarray]
    report: dict
    curves: dict[str, list[dict]]
    lead_times: dict[str, np.ndarray]


def holdout_risks(bundles: dict[str, Bundle], data: PipelineData, device: str,
                  client: Any = None) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The holdout's windows (one per readout) and each bundle's risk (at its
    ``risk_class``) at them, scored bucket by bucket as ``componentx predict`` scores: the
    same candidate, features and calibration; on ``client``'s cluster, each task reading the
    candidate from its folder (:func:`bucket_risk`)."""
    holdout = data.labelled("fleet")
    risks = {name: holdout.gather(bucket_risk, (
        name, bundle.folder, bundle.meta, bundle.calibrator.to_dict(), device), client,
        f"fleet, {name}") for name, bundle in bundles.items()}
    return holdout.index, risks


def bucket_risk(windows: Windows, name: str, folder: Path, meta: dict, calibration: dict,
                device: str) -> np.ndarray:
    """One bucket's risks (windows,) by candidate ``name`` fitted in ``folder``, with the
    bundle's ``meta`` and ``calibration`` (a task: what travels is the folder's path and
    these small dicts, never a model; each process reads a candidate once)."""
    bundle = Bundle(Path(folder), meta, loaded_candidate(name, Path(folder)),
                    Calibrator.from_dict(calibration))
    return bundle.risk(bundle.probabilities(windows, device))


def candidate_bundles(params: dict, folders: CandidateFolders, data: PipelineData
                      ) -> dict[str, Bundle]:
    """Every fitted candidate of ``gate.candidates`` as its bundle will be: its model read
    from its folder as data, its calibration, the risk class and class windows."""
    meta = {"risk_class": params["fleet"]["risk_class"],
            "class_windows": data.summary.class_windows(params["labels"]["windows"])}
    found = {}
    for candidate in folders.fitted(params)[0]:
        report = json.loads((folders.metrics / f"{candidate.name}.json").read_text())
        found[candidate.name] = Bundle(
            folders.models / candidate.name, meta,
            load_candidate(candidate.name, folders.models / candidate.name),
            Calibrator.from_dict(report["calibration"]))
    return found


def fleet_view(models: dict[str, Bundle], data: PipelineData, labels: Path, settings: dict,
               device: str = "auto", compute: dict | None = None) -> FleetView | None:
    """The fleet view of the holdout (None when there is none) by ``models``
    (:func:`candidate_bundles`), scored on the Dask cluster of ``compute``
    (``params.compute``; None: one worker, or ``DASK_SCHEDULER_ADDRESS``'s cluster);
    ``settings`` is ``params.fleet``, whose
    ``horizon: auto`` is the window of their risk
    (:func:`~componentx.decisions.rules.risk_window`)."""
    holdout = data.labelled("fleet")
    if holdout.index.empty:
        return None
    with dask_client(compute or {"workers": 1}, len(holdout.groups())) as client:
        index, risks = holdout_risks(models, data, resolve_device(device), client)
    references = pd.concat([pd.read_parquet(path)
                            for path in sorted((labels / "fleet").glob("*.parquet"))])
    per_vehicle = references.groupby("vehicle_id", sort=True)[["repaired", "end"]].first()
    fleet = Fleet(index["vehicle_id"].to_numpy(), index["ref_time"].to_numpy(),
                  per_vehicle["repaired"].to_numpy(bool), per_vehicle["end"].to_numpy(float))
    meta = next(iter(models.values())).meta
    horizon = (risk_window(meta["class_windows"], meta["risk_class"])
               if settings["horizon"] == "auto" else float(settings["horizon"]))
    report = {"available": True, "vehicles": len(per_vehicle),
              "repairs": int(per_vehicle["repaired"].sum()), "readouts": len(index),
              "horizon": horizon, "observed_time": float(fleet.duration.sum())}
    curves, lead_times = {}, {}
    for name, risk in risks.items():
        report[name], curves[name], lead_times[name] = fleet_report(fleet, risk, settings,
                                                                    horizon)
    return FleetView(fleet, horizon, risks, report, curves, lead_times)
