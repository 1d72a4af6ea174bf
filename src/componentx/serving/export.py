"""The export stage's bundles: every candidate as a self-contained bundle, and which one the
gate ships."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import yaml

from componentx import __version__
from componentx.candidates.folders import CandidateFolders
from componentx.data.layout import DatasetSummary
from componentx.data.specs import train_vocabularies
from componentx.data.windowing import buckets_of, readout_arrays
from componentx.decisions.metrics import check_cost_matrix
from componentx.serving.bundle import write_bundle
from componentx.serving.drift import increments, reference

BUNDLE_METRICS = ("cost_total", "cost_total_ci", "cost_always_0", "accuracy", "macro_f1",
                  "brier", "ece", "pr_auc")


def provenance(params: dict, summary: DatasetSummary) -> dict:
    """What a bundle was made from: params, data version (the ingest output's hash in
    ``dvc.lock``) and code version (the git commit, ``+changes`` when the code differs)."""
    lock = yaml.safe_load(Path("dvc.lock").read_text()) if Path("dvc.lock").exists() else {}
    outs = lock.get("stages", {}).get("ingest", {}).get("outs", [{}])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "stages"],
                           capture_output=True, text=True).stdout.strip()
    return {"params": params,
            "data": {"source": params["data"]["source"], "version": outs[0].get("md5", "?"),
                     "vehicles": summary.vehicles},
            "code": {"version": __version__, "commit": commit + ("+changes" if dirty else "")}}


def bundle_metrics(report: dict, gate: dict) -> dict:
    """The metrics a bundle carries: per split the headline scores, and the gate's verdict."""
    return {**{split: {k: report[split][k] for k in BUNDLE_METRICS}
               for split in ("validation", "test")}, "selection": report["selection"],
            "fitted_as": report["fitted_as"], "gate": gate}


def common_meta(params: dict, ingested: Path) -> dict:
    """What every bundle of a run says about the data and the decisions: feature and
    specification columns, the specification vocabularies, classes and class windows, window
    size, ``risk_class`` (``fleet.risk_class``), cost matrix, decision rule, provenance."""
    summary = DatasetSummary.load(ingested / "schema.json")
    return {
        "feature_columns": summary.feature_columns, "spec_columns": summary.spec_columns,
        "spec_vocabularies": train_vocabularies(ingested, summary.spec_columns),
        "num_classes": summary.num_classes,
        "class_windows": summary.class_windows(params["labels"]["windows"]),
        "window_size": params["window"]["size"], "risk_class": params["fleet"]["risk_class"],
        "cost_matrix": check_cost_matrix(params["evaluate"]["cost_matrix"],
                                         summary.num_classes),
        "decision": params["evaluate"]["decision"], "provenance": provenance(params, summary),
    }


def alarm_settings(fleet: dict, name: str, settings: dict) -> dict | None:
    """The alarm a candidate's bundle carries: the fleet view's thresholds for it (``fleet``
    is ``metrics/fleet.json``), the readouts in a row and the horizon; None without a fleet
    holdout."""
    if not fleet.get("available") or name not in fleet:
        return None
    return {"tau_on": fleet[name]["tau_on"], "tau_off": fleet[name]["tau_off"],
            "min_consecutive": settings["min_consecutive"], "horizon": fleet["horizon"]}


def drift_reference(windows: Path, features: list[str], sample_rows: int = 100_000) -> dict:
    """The drift reference of the train readouts' increments (:mod:`componentx.serving.drift`),
    bucket by bucket: the bin edges from every n-th increment, then the counts of all."""
    buckets = range(buckets_of(windows))
    rows = sum(len(readout_arrays(windows, "train", b)[1]) for b in buckets)
    step = max(1, rows // sample_rows)
    sample = np.concatenate([increments(*readout_arrays(windows, "train", b))[::step].copy()
                             for b in buckets])  # a copy: a view would keep every bucket
    return reference((increments(*readout_arrays(windows, "train", b)) for b in buckets),
                     sample, features)


def write_bundles(out: Path, params: dict, ingested: Path, windows: Path, gate: dict,
                  fleet: dict, folders: CandidateFolders) -> None:
    """``out/{name}`` for every fitted candidate of ``gate.candidates``: its fitted model
    (``folders.models/{name}``), calibration and metrics (``folders.metrics/{name}.json``),
    the gate's verdict, what its fit chose, its alarm (the fleet view's thresholds,
    ``fleet`` being ``metrics/fleet.json``), the drift reference of the train readouts, and
    everything scoring needs."""
    common = common_meta(params, ingested)
    common["drift_reference"] = drift_reference(windows, common["feature_columns"])
    for candidate in folders.fitted(params)[0]:
        name = candidate.name
        report = json.loads((folders.metrics / f"{name}.json").read_text())
        fit = folders.fit_report(name)
        write_bundle(out / name, folders.models / name, {
            **common, "kind": name, "title": candidate.title,
            "description": fit["description"], "fit": fit["report"],
            "calibration": report["calibration"], "shipped": gate["ship"] == name,
            "alarm": alarm_settings(fleet, name, params["fleet"]),
            "metrics": bundle_metrics(report, gate)})


def shipped_bundle(gate: dict, bundles: Path) -> Path:
    """The folder of the bundle the gate ships: a candidate's, or, when a promoted model
    stays (``ship: reference``), the promoted bundle (``gate.reference``'s folder)."""
    if gate["ship"] != "reference":
        return bundles / gate["ship"]
    return Path(gate["reference"]["path"]).parent
