"""baseline: gradient-boosted trees on summary features of the same windows, scored exactly
like the sequence model (same labels, splits, calibration and decisions)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from componentx import baseline, evaluation
from componentx.dataset import window_spec_codes
from componentx.metrics import check_cost_matrix
from componentx.params import load_params
from componentx.runtime import atomic_dir, atomic_write_json, log, run_stage
from componentx.schema import SPLITS, DatasetSummary
from componentx.training import class_weight_tensor, effective_priors

params = load_params()
BASELINE, EVALUATE = params["baseline"], params["evaluate"]
INGESTED, WINDOWS = Path("data/ingested"), Path("data/windows")
PREDICTIONS, METRICS = Path("data/baseline_predictions"), Path("metrics/baseline.json")
MODEL = Path("models/baseline")


def use_window_stats() -> bool:
    """baseline.window_stats, or with auto: on when the train readouts are not cumulative."""
    if BASELINE["window_stats"] != "auto":
        return bool(BASELINE["window_stats"])
    cumulative = baseline.is_cumulative(np.load(WINDOWS / "train_values.npy", mmap_mode="r"),
                                        np.load(WINDOWS / "train_vehicle.npy"))
    log.info("baseline.window_stats auto: the readouts look %s, window statistics %s",
             "cumulative" if cumulative else "like levels", "off" if cumulative else "on")
    return not cumulative


def split_features(split: str, names: list[str], specs: list[str], window_stats: bool
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    windows = pd.read_parquet(WINDOWS / f"{split}_windows.parquet")
    codes = window_spec_codes(INGESTED, split, specs, windows["vehicle_id"].to_numpy())
    table = baseline.summary_features(
        np.load(WINDOWS / f"{split}_values.npy", mmap_mode="r"),
        np.load(WINDOWS / f"{split}_time.npy"), np.load(WINDOWS / f"{split}_vehicle.npy"),
        windows, names, BASELINE["k"], codes, specs, window_stats)
    return table, windows


def main() -> None:
    summary = DatasetSummary.load(INGESTED / "schema.json")
    num_classes, specs = summary.num_classes, summary.spec_columns
    cost_matrix = check_cost_matrix(EVALUATE["cost_matrix"], num_classes)
    names = json.loads((WINDOWS / "features.json").read_text())
    window_stats = use_window_stats()
    data = {split: split_features(split, names, specs, window_stats) for split in SPLITS}
    train_y = data["train"][1]["class_label"].to_numpy()
    val_x, val_y = data["validation"][0], data["validation"][1]["class_label"].to_numpy()
    weights = class_weight_tensor(BASELINE["class_weights"], train_y, num_classes)
    sample_weight = None if weights is None else weights.numpy()[train_y]
    priors = effective_priors(train_y, weights, False, num_classes)
    fitted = baseline.fit_baseline(data["train"][0], train_y, sample_weight, val_x, val_y,
                                   priors, cost_matrix, specs, BASELINE)
    fitted.window_stats = window_stats
    sizes = baseline.resolve_size_settings(BASELINE, len(train_y))
    log.info("baseline (%s): %d windows x %d summary features, leaves of %d or more, %d at "
             "most; validation expected cost is lowest after %d of %d iterations (%.0f, "
             "smoothed over %d)", BASELINE["library"], len(train_y), data["train"][0].shape[1],
             sizes["min_samples_leaf"], sizes["max_leaf_nodes"], fitted.iterations,
             len(fitted.validation_costs), fitted.validation_costs[fitted.iterations - 1],
             baseline.SMOOTHING)
    logits = {s: fitted.logits(data[s][0], num_classes) for s in ("validation", "test")}
    labels = {s: data[s][1]["class_label"].to_numpy() for s in ("validation", "test")}
    report, scored, _ = evaluation.evaluate_logits(logits, labels, priors, cost_matrix, EVALUATE)
    report["iterations"] = fitted.iterations
    report["window_stats"] = window_stats
    report |= {key: sizes[key] for key in ("min_samples_leaf", "max_leaf_nodes")}
    with atomic_dir(PREDICTIONS) as tmp:
        for split, result in scored.items():
            evaluation.predictions_frame(data[split][1]["vehicle_id"].to_numpy(), result,
                                         EVALUATE["decision"], cost_matrix,
                                         ).to_parquet(tmp / f"{split}.parquet", index=False)
            evaluation.log_summary("baseline", split, report[split])
    with atomic_dir(MODEL) as tmp:
        fitted.save(tmp)
    atomic_write_json(METRICS, report)


if __name__ == "__main__":
    run_stage(main)
