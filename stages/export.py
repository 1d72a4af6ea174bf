"""export: both models as self-contained bundles (models/bundles/{sequence,baseline}), and the
one the gate ships as models/bundle, the artifact `componentx predict` and the model registry
use."""

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import torch
import yaml

from componentx import __version__
from componentx.bundle import spec_vocabularies, write_baseline_bundle, write_sequence_bundle
from componentx.metrics import check_cost_matrix
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage
from componentx.schema import DatasetSummary

params = load_params()
EVALUATE, GATE = params["evaluate"], params["gate"]
INGESTED, STATS = Path("data/ingested"), Path("data/stats.json")
MODEL, BASELINE_MODEL = Path("models/best.pt"), Path("models/baseline")
BUNDLES, SHIPPED = Path("models/bundles"), Path("models/bundle")


def provenance(summary: DatasetSummary) -> dict:
    """What the bundle was made from: params, data and code versions."""
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


def metrics_of(report: dict, paired: dict | None, gate: dict) -> dict:
    keep = ("cost_total", "cost_total_ci", "cost_always_0", "macro_f1", "brier", "ece",
            "pr_auc")
    return {**{split: {k: report[split][k] for k in keep} for split in ("validation", "test")},
            "paired_vs_baseline": paired, "gate": gate}


def main() -> None:
    summary = DatasetSummary.load(INGESTED / "schema.json")
    specs = pd.read_parquet(INGESTED / "train_specs.parquet") if summary.spec_columns else None
    gate = json.loads(Path("metrics/gate.json").read_text())
    evaluate = json.loads(Path("metrics/evaluate.json").read_text())
    baseline = json.loads(Path("metrics/baseline.json").read_text())
    fitted = json.loads((BASELINE_MODEL / "baseline.json").read_text())
    shipped = "sequence" if gate["ship"] == "run" else "reference"
    common = {
        "feature_columns": summary.feature_columns, "spec_columns": summary.spec_columns,
        "spec_vocabularies": spec_vocabularies(
            {c: specs[c].tolist() for c in summary.spec_columns}),
        "num_classes": summary.num_classes,
        "class_windows": params["labels"]["windows"] if summary.train_target == "tte" else None,
        "window_size": params["window"]["size"], "risk_class": 1,
        "cost_matrix": check_cost_matrix(EVALUATE["cost_matrix"], summary.num_classes),
        "decision": EVALUATE["decision"], "provenance": provenance(summary),
    }
    with atomic_dir(BUNDLES) as tmp:
        write_sequence_bundle(tmp / "sequence", torch.load(MODEL, weights_only=False), {
            **common, "features": json.loads(STATS.read_text()),
            "calibration": evaluate["calibration"], "shipped": shipped == "sequence",
            "metrics": metrics_of(evaluate, evaluate["paired_vs_baseline"], gate)})
        write_baseline_bundle(tmp / "baseline", BASELINE_MODEL, {
            **common, "k": params["baseline"]["k"], "library": fitted["library"],
            "iterations": fitted["iterations"], "window_stats": fitted["window_stats"],
            "calibration": baseline["calibration"],
            "shipped": shipped == "reference", "metrics": metrics_of(baseline, None, gate)})
    reference = Path(GATE["reference"]).parent
    chosen = BUNDLES / "sequence" if shipped == "sequence" else (
        reference if (reference / "bundle.json").exists() else BUNDLES / "baseline")
    with atomic_dir(SHIPPED) as tmp:
        shutil.copytree(chosen, tmp, dirs_exist_ok=True)
    log.info("bundles written to %s; the gate ships %s (copied to %s)", BUNDLES, chosen,
             SHIPPED)


if __name__ == "__main__":
    run_stage(main)
