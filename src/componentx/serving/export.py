"""The export stage's bundles: every model as a self-contained bundle, and which one the gate
ships."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

from componentx import __version__
from componentx.data.layout import DatasetSummary
from componentx.data.specs import train_vocabularies
from componentx.decisions.metrics import check_cost_matrix
from componentx.serving.bundle import write_baseline_bundle, write_sequence_bundle

BUNDLE_METRICS = ("cost_total", "cost_total_ci", "cost_always_0", "macro_f1", "brier", "ece",
                  "pr_auc")


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


def bundle_metrics(report: dict, paired: dict | None, gate: dict) -> dict:
    """The metrics a bundle carries: per split the headline scores, and the gate's verdict."""
    return {**{split: {k: report[split][k] for k in BUNDLE_METRICS}
               for split in ("validation", "test")}, "paired_vs_baseline": paired, "gate": gate}


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


def write_bundles(out: Path, params: dict, ingested: Path, stats: Path, model: Path,
                  baseline_model: Path, metrics: Path) -> None:
    """``out/sequence`` and ``out/baseline``: the sequence model of the checkpoint ``model``
    and the fitted trees of ``baseline_model``, each with its calibration and metrics (from
    ``metrics/evaluate.json`` and ``metrics/baseline.json`` in ``metrics``), the gate's
    verdict, and everything scoring needs; ``risk_class`` is ``fleet.risk_class``."""
    gate = json.loads((metrics / "gate.json").read_text())
    evaluate = json.loads((metrics / "evaluate.json").read_text())
    baseline = json.loads((metrics / "baseline.json").read_text())
    fitted = json.loads((baseline_model / "baseline.json").read_text())
    shipped = shipped_kind(gate)
    common = common_meta(params, ingested)
    write_sequence_bundle(out / "sequence", model, {
        **common, "features": json.loads(stats.read_text()),
        "calibration": evaluate["calibration"], "shipped": shipped == "sequence",
        "metrics": bundle_metrics(evaluate, evaluate["paired_vs_baseline"], gate)})
    write_baseline_bundle(out / "baseline", baseline_model, {
        **common, "k": params["baseline"]["k"], "library": fitted["library"],
        "iterations": fitted["iterations"], "window_stats": fitted["window_stats"],
        "calibration": baseline["calibration"], "shipped": shipped == "baseline",
        "metrics": bundle_metrics(baseline, None, gate)})


def shipped_kind(gate: dict) -> str:
    """The model the gate's verdict ships: ``sequence`` when the run passed, else the
    reference (``baseline``, or a promoted bundle)."""
    return "sequence" if gate["ship"] == "run" else "baseline"


def shipped_bundle(gate: dict, bundles: Path) -> Path:
    """The folder of the bundle the gate ships: this run's sequence model, or the reference's
    bundle: a promoted one (``gate.reference`` inside a bundle folder) or the baseline's."""
    if shipped_kind(gate) == "sequence":
        return bundles / "sequence"
    reference = Path(gate["reference"]).parent
    return reference if (reference / "bundle.json").exists() else bundles / "baseline"
