"""evaluate: calibrate on validation, decide, and score validation and test with models/best.pt."""

from pathlib import Path

import numpy as np

from componentx import evaluation
from componentx.dataset import load_window_set
from componentx.decisions import softmax
from componentx.features import FeatureStats
from componentx.metrics import check_cost_matrix
from componentx.runtime import atomic_dir, atomic_write_json, load_params, log, run_stage
from componentx.schema import DatasetSummary
from componentx.training import choose_device, load_model, predict_logits

params = load_params()
EVALUATE = params["evaluate"]
WINDOW_SIZE = params["window"]["size"]
NUM_CLASSES = params["labels"]["num_classes"]
INGESTED, WINDOWS, STATS = Path("data/ingested"), Path("data/windows"), Path("data/stats.json")
MODEL = Path("models/best.pt")
PREDICTIONS, PLOTS, METRICS = Path("data/predictions"), Path("plots/evaluate"), Path(
    "metrics/evaluate.json")


def main() -> None:
    cost_matrix = check_cost_matrix(EVALUATE["cost_matrix"], NUM_CLASSES)
    device = choose_device("auto")
    model, checkpoint = load_model(MODEL, device)
    stats = FeatureStats.load(STATS)
    specs = DatasetSummary.load(INGESTED / "schema.json").spec_columns
    logits, labels, vehicles = {}, {}, {}
    for split in ("validation", "test"):
        windows = load_window_set(WINDOWS, INGESTED, split, stats, specs, WINDOW_SIZE)
        logits[split] = predict_logits(model, windows, device).astype(np.float64)
        labels[split] = windows.labels.numpy()
        vehicles[split] = windows.windows["vehicle_id"].to_numpy()
    priors = None if EVALUATE["priors"] == "validation" else EVALUATE["priors"]
    calibrator = evaluation.fit_calibrator(logits["validation"], labels["validation"],
                                           np.asarray(checkpoint["train_priors"]), priors,
                                           EVALUATE["calibration"])
    report = {"temperature": calibrator.temperature}
    with atomic_dir(PREDICTIONS) as predictions_tmp, atomic_dir(PLOTS) as plots_tmp:
        for split in ("validation", "test"):
            raw = softmax(logits[split])
            probs = calibrator.probabilities(logits[split])
            report[split] = evaluation.split_report(
                labels[split], raw, probs, cost_matrix, EVALUATE["decision"],
                EVALUATE["bootstrap"], EVALUATE["seed"])
            frame = evaluation.predictions_frame(vehicles[split], labels[split], probs, raw,
                                                 EVALUATE["decision"], cost_matrix)
            frame.to_parquet(predictions_tmp / f"{split}.parquet", index=False)
            evaluation.write_plot_tables(plots_tmp, split, labels[split], raw, probs,
                                         frame["predicted"].to_numpy(), report[split])
            r = report[split]
            log.info("%s: cost %.0f %s (always 0: %.0f; argmax %.0f), macro-F1 %.3f, "
                     "PR-AUC %.3f, ECE %.3f", split, r["cost_total"],
                     np.round(r["cost_total_ci"]).tolist(), r["cost_always_0"],
                     r["argmax"]["cost_total"], r["macro_f1"], r["pr_auc"]["macro"], r["ece"])
    atomic_write_json(METRICS, report)


if __name__ == "__main__":
    run_stage(main)
