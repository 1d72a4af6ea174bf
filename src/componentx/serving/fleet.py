"""The fleet view: every candidate's bundle run at every readout of the fleet holdout's vehicles
(train vehicles no model saw), as they would in service, and what their alarms would do."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.data.layout import DatasetSummary
from componentx.data.specs import vehicle_codes
from componentx.data.windowing import buckets_of, read_window_index, readout_arrays
from componentx.decisions.alarms import Fleet, fleet_report
from componentx.decisions.candidates import CANDIDATES
from componentx.decisions.rules import risk_window
from componentx.serving.bundle import read_meta
from componentx.serving.scoring import Scorer

MODELS = tuple(candidate.name for candidate in CANDIDATES)


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
    bucket by bucket as ``componentx predict`` scores: the same engine, features and
    calibration."""
    summary = DatasetSummary.load(ingested / "schema.json")
    codes = vehicle_codes(ingested, "train", summary.spec_columns, index["vehicle_id"].to_numpy())
    scorers = {name: Scorer(bundles / name, read_meta(bundles / name)) for name in MODELS}
    risks = {name: np.zeros(len(index)) for name in MODELS}
    for bucket in range(buckets_of(windows)):
        mine = np.flatnonzero(index["bucket"].to_numpy() == bucket)
        if not len(mine):
            continue
        arrays = readout_arrays(windows, "fleet", bucket)
        part = index.iloc[mine]
        for name, scorer in scorers.items():
            logits = scorer.logits(*arrays, part["end_row"].to_numpy(),
                                   part["length"].to_numpy(), part["ref_time"].to_numpy(),
                                   codes[mine])
            risks[name][mine] = scorer.risk(scorer.probabilities(logits))
    return risks


def fleet_view(bundles: Path, ingested: Path, windows: Path, labels: Path, settings: dict
               ) -> FleetView | None:
    """The fleet view of the holdout (None when there is none); ``settings`` is
    ``params.fleet``, whose ``horizon: auto`` is the window of the bundles' risk
    (:func:`~componentx.decisions.rules.risk_window`)."""
    index = read_window_index(windows, "fleet")
    if index.empty:
        return None
    references = pd.concat([pd.read_parquet(path)
                            for path in sorted((labels / "fleet").glob("*.parquet"))])
    per_vehicle = references.groupby("vehicle_id", sort=True)[["repaired", "end"]].first()
    fleet = Fleet(index["vehicle_id"].to_numpy(), index["ref_time"].to_numpy(),
                  per_vehicle["repaired"].to_numpy(bool), per_vehicle["end"].to_numpy(float))
    meta = read_meta(bundles / MODELS[0])
    horizon = (risk_window(meta["class_windows"], meta["risk_class"])
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
