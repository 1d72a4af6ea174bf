"""The fleet view: every fitted candidate run at every readout of the fleet holdout's vehicles
(train vehicles no model saw), exactly as its bundle will run in service (the same model files,
read the same way, and calibration), and what its alarms would do; the alarm thresholds it
picks go into the bundles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData
from componentx.candidates.registry import load_candidate, loaded_candidate
from componentx.compute import dask_client, each_task, keyed_hash, map_tasks
from componentx.data.layout import bucket_file
from componentx.data.windowing import bucket_rows, read_bucket_index
from componentx.decisions.alarms import (
    RISK_SCALE,
    AlarmSummary,
    Fleet,
    alarm_state,
    alarm_thresholds,
    exact_sum,
    risk_codes,
    risk_thresholds,
    sensitivity_at,
    summarise,
    sweep_counts,
    sweep_curve,
)
from componentx.decisions.calibration import Calibrator
from componentx.decisions.rules import risk_window
from componentx.devices import resolve_device
from componentx.serving.bundle import Bundle

TRAJECTORIES = "trajectories.parquet"  # a folder: a file per bucket of the holdout
FIGURE_VEHICLES = {True: 3, False: 1}  # repaired and censored vehicles in the figure
FIGURE_SEED = 0


@dataclass
class FleetView:
    """What every model's alarms did over the holdout: per model the alarm ``report``, the
    detection curve of the threshold sweep and the lead times of the detected repairs; and
    ``shown``, the trajectories of a few vehicles (a keyed choice) for the figure."""

    horizon: float
    report: dict
    curves: dict[str, list[dict]]
    lead_times: dict[str, np.ndarray]
    shown: pd.DataFrame


def score_fleet_bucket(data: PipelineData, labels: Path, bucket: int, bundles: dict[str, tuple],
                       device: str, folder: Path) -> dict | None:
    """One bucket of the holdout (a task): each bundle's risk (at its ``risk_class``) at every
    readout, scored as ``componentx predict`` scores (the same candidate files, features and
    calibration; ``bundles``: name to (folder, meta, calibration)), written to
    ``folder/{bucket:04d}.parquet`` with the vehicle's repair and study end. Returns what the
    driver adds up: the counts of each bundle's rounded risks (:func:`risk_codes`), the
    vehicles, repairs, readouts and observed time, and the bucket's first vehicles by keyed
    hash (the figure's candidates); None for a bucket without holdout windows."""
    index = read_bucket_index(data.windows, "fleet", bucket)
    if index.empty:
        return None
    windows = data.bucket_windows("fleet", bucket, index)
    references = pd.read_parquet(bucket_file(labels, "fleet", bucket)).groupby(
        "vehicle_id", sort=True)[["repaired", "end"]].first()
    part = pd.DataFrame({"vehicle_id": index["vehicle_id"].to_numpy(),
                         "time": index["ref_time"].to_numpy()})
    part["repaired"] = references["repaired"].reindex(part["vehicle_id"]).to_numpy(bool)
    part["end"] = references["end"].reindex(part["vehicle_id"]).to_numpy(float)
    codes = {}
    for name, (model_folder, meta, calibration) in bundles.items():
        bundle = Bundle(Path(model_folder), meta, loaded_candidate(name, Path(model_folder)),
                        Calibrator.from_dict(calibration))
        part[f"risk_{name}"] = bundle.risk(bundle.probabilities(windows, device))
        codes[name] = risk_codes(part[f"risk_{name}"].to_numpy())
    part.to_parquet(Path(folder) / f"{bucket:04d}.parquet", index=False)
    fleet = part_fleet(part)
    vehicles = pd.DataFrame({"vehicle_id": fleet.vehicle[fleet.start],
                             "repaired": fleet.repaired})
    vehicles["key"] = keyed_hash(FIGURE_SEED, vehicles["vehicle_id"].to_numpy())
    first = pd.concat([group.nsmallest(FIGURE_VEHICLES[repaired], "key") for repaired, group
                       in vehicles.groupby("repaired")]).assign(bucket=bucket)
    return {"codes": codes, "vehicles": len(fleet.repaired),
            "repairs": int(fleet.repaired.sum()), "readouts": len(part),
            "observed_time": exact_sum(fleet.duration), "first": first}


def part_fleet(part: pd.DataFrame) -> Fleet:
    """The :class:`Fleet` of one bucket's trajectories (rows by vehicle, then time)."""
    per_vehicle = part.groupby("vehicle_id", sort=False)[["repaired", "end"]].first()
    return Fleet(part["vehicle_id"].to_numpy(), part["time"].to_numpy(),
                 per_vehicle["repaired"].to_numpy(bool), per_vehicle["end"].to_numpy(float))


def sweep_fleet_bucket(path: Path, thresholds: dict[str, np.ndarray], settings: dict,
                       horizon: float) -> dict[str, np.ndarray]:
    """:func:`~componentx.decisions.alarms.sweep_counts` of each model's ``thresholds`` over
    one bucket's trajectories (a task)."""
    part = pd.read_parquet(path)
    fleet = part_fleet(part)
    return {name: sweep_counts(fleet, part[f"risk_{name}"].to_numpy(), values,
                               settings["hysteresis"], settings["min_consecutive"], horizon)
            for name, values in thresholds.items()}


def summarise_fleet_bucket(path: Path, taus: dict[str, tuple[float, float]],
                           min_consecutive: int, horizon: float) -> dict[str, AlarmSummary]:
    """The :class:`~componentx.decisions.alarms.AlarmSummary` of each model's alarm (its
    ``tau_on`` and ``tau_off``) over one bucket's trajectories (a task)."""
    part = pd.read_parquet(path)
    fleet = part_fleet(part)
    return {name: summarise(fleet, alarm_state(fleet, part[f"risk_{name}"].to_numpy(), on, off,
                                               min_consecutive), horizon)
            for name, (on, off) in taus.items()}


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
               out: Path, device: str = "auto", compute: dict | None = None
               ) -> FleetView | None:
    """The fleet view of the holdout (None when there is none) by ``models``
    (:func:`candidate_bundles`), bucket by bucket on the Dask cluster of ``compute``
    (``params.compute``; None: one worker, or ``DASK_SCHEDULER_ADDRESS``'s cluster): the
    trajectories go to ``out/trajectories.parquet/`` (a file per bucket, written by its
    task); what comes back is counts and exact sums, added up here as they come, so what
    grows here is a few numbers per bucket and the lead times (one per detected repair).
    ``settings`` is ``params.fleet``, whose ``horizon: auto`` is the window of their risk
    (:func:`~componentx.decisions.rules.risk_window`)."""
    buckets = [b for b, rows in enumerate(bucket_rows(data.windows, "fleet")) if rows]
    if not buckets:
        return None
    folder = Path(out) / TRAJECTORIES
    folder.mkdir(parents=True)
    meta = next(iter(models.values())).meta
    horizon = (risk_window(meta["class_windows"], meta["risk_class"])
               if settings["horizon"] == "auto" else float(settings["horizon"]))
    specs = {name: (bundle.folder, bundle.meta, bundle.calibrator.to_dict())
             for name, bundle in models.items()}
    device = resolve_device(device)
    with dask_client(compute or {"workers": 1}, len(buckets)) as client:
        counts = {name: np.zeros(RISK_SCALE + 1, dtype=np.int64) for name in models}
        scored, parts = [], []
        for bucket, found in zip(buckets, each_task(client, score_fleet_bucket, [
                (data, labels, bucket, specs, device, folder) for bucket in buckets],
                "fleet, scoring"), strict=True):
            if found is not None:  # added up as they come: no bucket's codes kept
                for name, (codes, how_many) in found.pop("codes").items():
                    np.add.at(counts[name], codes, how_many)
                scored.append(found)
                parts.append(folder / f"{bucket:04d}.parquet")
        if not scored:
            return None
        thresholds = {name: risk_thresholds(values) for name, values in counts.items()}
        swept = {name: np.zeros((len(values), 2), dtype=np.int64)
                 for name, values in thresholds.items()}
        for found in each_task(client, sweep_fleet_bucket, [
                (path, thresholds, settings, horizon) for path in parts],
                "fleet, threshold sweep"):
            for name, counted in found.items():
                swept[name] += counted
        repairs = sum(found["repairs"] for found in scored)
        observed_time = sum(found["observed_time"] for found in scored)
        curves = {name: sweep_curve(thresholds[name], swept[name], repairs,
                                    float(observed_time)) for name in models}
        taus = {name: alarm_thresholds(curve, settings) for name, curve in curves.items()}
        summaries = map_tasks(client, summarise_fleet_bucket, [
            (path, {name: (on, off) for name, (on, off, _) in taus.items()},
             settings["min_consecutive"], horizon) for path in parts], "fleet, alarms")
    report = {"available": True, "vehicles": sum(found["vehicles"] for found in scored),
              "repairs": repairs, "readouts": sum(found["readouts"] for found in scored),
              "horizon": horizon, "observed_time": float(observed_time)}
    lead_times = {}
    for name, (tau_on, tau_off, picked) in taus.items():
        summary = AlarmSummary.merge([s[name] for s in summaries])
        report[name] = {"tau_on": tau_on, "tau_off": tau_off,
                        "tau_on_picked_for_target_fa": picked, **summary.metrics(),
                        "sensitivity_at_false_alarms_per_1000": sensitivity_at(curves[name])}
        lead_times[name] = summary.lead_times
    return FleetView(horizon, report, curves, lead_times, shown_trajectories(scored, folder))


def shown_trajectories(scored: list[dict], folder: Path) -> pd.DataFrame:
    """The trajectories of the vehicles the figure shows: the first repaired and censored
    vehicles of the holdout by keyed hash (:data:`FIGURE_VEHICLES`), read from their buckets'
    files."""
    first = pd.concat([found["first"] for found in scored])
    chosen = pd.concat([group.nsmallest(FIGURE_VEHICLES[repaired], "key")
                        for repaired, group in first.groupby("repaired")])
    return pd.concat([pd.read_parquet(folder / f"{bucket:04d}.parquet", filters=[
        ("vehicle_id", "in", group["vehicle_id"].tolist())])
        for bucket, group in chosen.groupby("bucket")], ignore_index=True)
