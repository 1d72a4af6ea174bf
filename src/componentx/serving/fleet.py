"""The fleet view: the shipped bundles run at every readout of the fleet holdout's vehicles
(train vehicles no model saw), as they would in service, and what their alarms would do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.data.layout import DatasetSummary
from componentx.data.specs import vehicle_codes
from componentx.decisions.alarms import Fleet, fleet_report
from componentx.decisions.rules import risk_window
from componentx.serving.bundle import read_meta
from componentx.serving.scoring import Scorer

MODELS = ("sequence", "baseline")


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


def holdout_risks(bundles: Path, ingested: Path, windows: Path, index: pd.DataFrame
                  ) -> dict[str, np.ndarray]:
    """Each bundle's risk (at its ``risk_class``) at the holdout's windows ``index``, scored
    as ``componentx predict`` scores: the same engine, features and calibration."""
    values = np.load(windows / "fleet_values.npy", mmap_mode="r")
    times, ids = np.load(windows / "fleet_time.npy"), np.load(windows / "fleet_vehicle.npy")
    summary = DatasetSummary.load(ingested / "schema.json")
    codes = vehicle_codes(ingested, "train", summary.spec_columns, index["vehicle_id"].to_numpy())
    risks = {}
    for name in MODELS:
        scorer = Scorer(bundles / name, read_meta(bundles / name))
        logits = scorer.logits(values, times, ids, index["end_row"].to_numpy(),
                               index["length"].to_numpy(), index["ref_time"].to_numpy(), codes)
        risks[name] = scorer.risk(scorer.probabilities(logits))
    return risks


def fleet_view(bundles: Path, ingested: Path, windows: Path, labels: Path, settings: dict,
               class_windows: list[float]) -> FleetView | None:
    """The fleet view of the holdout (None when there is none); ``settings`` is
    ``params.fleet``, whose ``horizon: auto`` is the risk's window
    (:func:`~componentx.decisions.rules.risk_window`)."""
    index = pd.read_parquet(windows / "fleet_windows.parquet")
    if index.empty:
        return None
    references = pd.read_parquet(labels / "fleet.parquet")
    per_vehicle = references.groupby("vehicle_id", sort=True)[["repaired", "end"]].first()
    fleet = Fleet(index["vehicle_id"].to_numpy(), index["ref_time"].to_numpy(),
                  per_vehicle["repaired"].to_numpy(bool), per_vehicle["end"].to_numpy(float))
    horizon = (risk_window(class_windows, settings["risk_class"])
               if settings["horizon"] == "auto" else float(settings["horizon"]))
    risks = holdout_risks(bundles, ingested, windows, index)
    report = {"available": True, "vehicles": len(per_vehicle),
              "repairs": int(per_vehicle["repaired"].sum()), "readouts": len(index),
              "horizon": horizon, "observed_time": float(fleet.duration.sum())}
    curves, lead_times = {}, {}
    for name, risk in risks.items():
        report[name], curves[name], lead_times[name] = fleet_report(fleet, risk, settings,
                                                                    horizon)
    return FleetView(fleet, horizon, risks, report, curves, lead_times)
