"""evaluate: calibrate on validation, decide, and score validation and test with models/best.pt."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from componentx import evaluation
from componentx.calibration import calibration_method
from componentx.dataset import load_window_set
from componentx.features import FeatureStats
from componentx.metrics import check_cost_matrix
from componentx.params import load_params
from componentx.runtime import atomic_dir, atomic_write_bytes, atomic_write_json, run_stage
from componentx.schema import DatasetSummary
from componentx.tracking import Tracker, run_name
from componentx.training import choose_device, load_model, predict_logits

params = load_params()
EVALUATE, TRACKING = params["evaluate"], params["tracking"]
WINDOW_SIZE = params["window"]["size"]
INGESTED, WINDOWS, STATS = Path("data/ingested"), Path("data/windows"), Path("data/stats.json")
MODEL = Path("models/best.pt")
PREDICTIONS, PLOTS = Path("data/predictions"), Path("plots/evaluate")
METRICS, BASELINE_METRICS = Path("metrics/evaluate.json"), Path("metrics/baseline.json")
BASELINE_PREDICTIONS = Path("data/baseline_predictions")
COMPARISON = Path("metrics/comparison.md")
FINAL_METRICS = ("cost_total", "cost_always_0", "macro_f1", "accuracy", "brier", "ece",
                 "classwise_ece", "log_loss", "pr_auc", "roc_auc")


def paired_with_baseline(split: str, ours: pd.DataFrame, cost_matrix: np.ndarray) -> dict:
    """Sequence model minus baseline on the same vehicles, resampled together."""
    theirs = pd.read_parquet(BASELINE_PREDICTIONS / f"{split}.parquet")
    if not np.array_equal(ours["vehicle_id"].to_numpy(), theirs["vehicle_id"].to_numpy()):
        raise ValueError(f"{BASELINE_PREDICTIONS / split}.parquet holds other vehicles than the "
                         "sequence model's predictions (re-run the baseline stage)")
    prob_columns = [c for c in ours.columns if c.startswith("prob_")]
    return evaluation.paired_comparison(
        ours["class_label"].to_numpy(), ours["predicted"].to_numpy(),
        theirs["predicted"].to_numpy(), ours[prob_columns].to_numpy(),
        theirs[prob_columns].to_numpy(), cost_matrix, EVALUATE["bootstrap"], EVALUATE["seed"])


def main() -> None:
    summary = DatasetSummary.load(INGESTED / "schema.json")
    cost_matrix = check_cost_matrix(EVALUATE["cost_matrix"], summary.num_classes)
    device = choose_device("auto")
    model, checkpoint = load_model(MODEL, device)
    stats = FeatureStats.load(STATS)
    specs = summary.spec_columns
    logits, labels, vehicles = {}, {}, {}
    for split in ("validation", "test"):
        windows = load_window_set(WINDOWS, INGESTED, split, stats, specs, WINDOW_SIZE)
        logits[split] = predict_logits(model, windows, device).astype(np.float64)
        labels[split] = windows.labels.numpy()
        vehicles[split] = windows.windows["vehicle_id"].to_numpy()
    trained = checkpoint["train_config"]
    method = calibration_method(EVALUATE["calibration"], trained["loss"],
                                           trained["label_smoothing"])
    report, scored, _ = evaluation.evaluate_logits(
        logits, labels, np.asarray(checkpoint["train_priors"]), cost_matrix, EVALUATE, method)
    report["paired_vs_baseline"] = {}
    with atomic_dir(PREDICTIONS) as predictions_tmp, atomic_dir(PLOTS) as plots_tmp:
        for split, result in scored.items():
            frame = evaluation.predictions_frame(vehicles[split], result, EVALUATE["decision"],
                                                 cost_matrix)
            frame.to_parquet(predictions_tmp / f"{split}.parquet", index=False)
            evaluation.write_plot_tables(plots_tmp, split, result.y, result.raw_probs,
                                         result.probs, frame["predicted"].to_numpy(),
                                         report[split])
            evaluation.summary_figure(plots_tmp / f"summary_{split}.png", split, result,
                                      frame["predicted"].to_numpy())
            evaluation.log_summary("sequence model", split, report[split])
            report["paired_vs_baseline"][split] = paired_with_baseline(split, frame,
                                                                       cost_matrix)
    atomic_write_json(METRICS, report)
    table = evaluation.comparison_markdown(
        {"sequence model": report, "GBDT baseline": json.loads(BASELINE_METRICS.read_text())},
        report["paired_vs_baseline"])
    atomic_write_bytes(COMPARISON, table.encode())
    print(table)
    name = run_name([INGESTED / "schema.json", INGESTED / "train_readouts.parquet"],
                    WINDOW_SIZE, checkpoint["config"]["arch"], checkpoint["fingerprint"])
    with Tracker(TRACKING, name, checkpoint["fingerprint"]) as tracker:
        tracker.start(resume=True)
        tracker.log_metrics({split: {k: v for k, v in report[split].items()
                                     if k in FINAL_METRICS} for split in ("validation", "test")})
        tracker.log_artifacts([METRICS, COMPARISON, *sorted(PLOTS.glob("summary_*.png"))],
                              "evaluation")


if __name__ == "__main__":
    run_stage(main)
