"""fleet: risk at every readout of the fleet holdout's vehicles (set aside by the labels stage,
seen by no model), with the sequence model and the baseline through their own calibration;
alarms with hysteresis, false alarms per time, lead times, and the thresholds they imply."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from componentx import alarms, baseline
from componentx.calibration import Calibrator
from componentx.dataset import load_window_set, window_spec_codes
from componentx.features import FeatureStats
from componentx.fleet_plots import lead_time_table, trajectories_figure
from componentx.params import load_params
from componentx.runtime import atomic_dir, atomic_write_json, log, run_stage
from componentx.schema import DatasetSummary
from componentx.training import choose_device, load_model, predict_logits

params = load_params()
FLEET, WINDOW_SIZE, K = params["fleet"], params["window"]["size"], params["baseline"]["k"]
CLASS_WINDOWS = params["labels"]["windows"]
INGESTED, LABELS, WINDOWS = Path("data/ingested"), Path("data/labels"), Path("data/windows")
STATS, MODEL, BASELINE_MODEL = Path("data/stats.json"), Path("models/best.pt"), Path(
    "models/baseline")
OUT, PLOTS, METRICS = Path("data/fleet"), Path("plots/fleet"), Path("metrics/fleet.json")


def risk(probs: np.ndarray) -> np.ndarray:
    """Calibrated probability of a class >= fleet.risk_class (1: failure within the largest
    class window)."""
    if not 1 <= FLEET["risk_class"] < probs.shape[1]:
        raise ValueError(f"fleet.risk_class must be in 1..{probs.shape[1] - 1}, got "
                         f"{FLEET['risk_class']}")
    return probs[:, FLEET["risk_class"]:].sum(axis=1)


def sequence_risk(summary: DatasetSummary) -> np.ndarray:
    device = choose_device("auto")
    model, _ = load_model(MODEL, device)
    windows = load_window_set(WINDOWS, INGESTED, "fleet", FeatureStats.load(STATS),
                              summary.spec_columns, WINDOW_SIZE, specs_split="train")
    logits = predict_logits(model, windows, device).astype(np.float64)
    calibration = json.loads(Path("metrics/evaluate.json").read_text())["calibration"]
    return risk(Calibrator.from_dict(calibration).probabilities(logits))


def baseline_risk(summary: DatasetSummary, meta: pd.DataFrame) -> np.ndarray:
    fitted = baseline.FittedBaseline.load(BASELINE_MODEL)
    features = baseline.summary_features(
        np.load(WINDOWS / "fleet_values.npy", mmap_mode="r"), np.load(WINDOWS / "fleet_time.npy"),
        np.load(WINDOWS / "fleet_vehicle.npy"), meta,
        json.loads((WINDOWS / "features.json").read_text()), K,
        window_spec_codes(INGESTED, "train", summary.spec_columns, meta["vehicle_id"].to_numpy()),
        summary.spec_columns, fitted.window_stats)
    logits = fitted.logits(features, summary.num_classes)
    calibration = json.loads(Path("metrics/baseline.json").read_text())["calibration"]
    return risk(Calibrator.from_dict(calibration).probabilities(logits))


def main() -> None:
    summary = DatasetSummary.load(INGESTED / "schema.json")
    meta = pd.read_parquet(WINDOWS / "fleet_windows.parquet")
    with atomic_dir(OUT) as out, atomic_dir(PLOTS) as plots:
        if meta.empty:
            reason = ("no fleet holdout: it needs train time-to-event (train_tte.csv) and "
                      "fleet.holdout > 0")
            log.info(reason)
            atomic_write_json(METRICS, {"available": False, "reason": reason})
            return
        references = pd.read_parquet(LABELS / "fleet.parquet")
        per_vehicle = references.groupby("vehicle_id", sort=True)[["repaired", "end"]].first()
        fleet = alarms.Fleet(meta["vehicle_id"].to_numpy(), meta["ref_time"].to_numpy(),
                             per_vehicle["repaired"].to_numpy(bool),
                             per_vehicle["end"].to_numpy(float))
        horizon = max(CLASS_WINDOWS) if FLEET["horizon"] == "auto" else float(FLEET["horizon"])
        risks = {"sequence": sequence_risk(summary), "baseline": baseline_risk(summary, meta)}
        report = {"available": True, "vehicles": len(per_vehicle),
                  "repairs": int(per_vehicle["repaired"].sum()), "readouts": len(meta),
                  "horizon": horizon, "observed_time": float(fleet.duration.sum())}
        lead_times = {}
        for name, values in risks.items():
            report[name], curve, lead_times[name] = alarms.fleet_report(fleet, values, FLEET,
                                                                        horizon)
            pd.DataFrame(curve).round(6).to_csv(plots / f"detection_{name}.csv", index=False)
            at = report[name]
            log.info("%s: tau_on %.4g (tau_off %.4g): detection %.2f, %.2f false alarms per "
                     "1000 time units, median lead time %s", name, at["tau_on"], at["tau_off"],
                     at["detection_rate"] or 0, at["false_alarms_per_1000"],
                     at["lead_time_median"])
        lead_time_table(lead_times, horizon).to_csv(plots / "lead_times.csv", index=False)
        trajectories_figure(plots / "trajectories.png", fleet, risks,
                            {name: (report[name]["tau_on"], report[name]["tau_off"])
                             for name in risks}, horizon)
        pd.DataFrame({"vehicle_id": meta["vehicle_id"], "time": meta["ref_time"],
                      "repaired": fleet.repaired[fleet.row_vehicle],
                      "end": fleet.end[fleet.row_vehicle],
                      **{f"risk_{name}": values for name, values in risks.items()}}
                     ).to_parquet(out / "trajectories.parquet", index=False)
        atomic_write_json(METRICS, report)


if __name__ == "__main__":
    run_stage(main)
