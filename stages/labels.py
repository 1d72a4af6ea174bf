"""labels: one row per (vehicle, reference time) with its class, for every split; and the fleet
holdout (train vehicles set aside, with every readout as a reference, used by no model)."""

from pathlib import Path

import numpy as np
import pandas as pd

from componentx import labels
from componentx.params import load_params
from componentx.runtime import atomic_dir, atomic_write_json, log, run_stage
from componentx.schema import SPLITS, DatasetSummary

everything = load_params()
params, FLEET = everything["labels"], everything["fleet"]
INGESTED = Path("data/ingested")
OUT = Path("data/labels")
METRICS = Path("metrics/labels.json")


def main() -> None:
    summary = DatasetSummary.load(INGESTED / "schema.json")
    if summary.train_target == "tte":  # windows only matter when labels come from time
        windows = labels.check_windows(params["windows"], summary.num_classes)
    distribution = {}
    with atomic_dir(OUT) as tmp:
        fleet = pd.DataFrame(columns=labels.FLEET_COLUMNS)
        for split in SPLITS:
            readouts = pd.read_parquet(INGESTED / f"{split}_readouts.parquet",
                                       columns=["vehicle_id", "time_step"])
            ids, times = readouts["vehicle_id"].to_numpy(), readouts["time_step"].to_numpy()
            if split == "train" and summary.train_target == "tte":
                tte = pd.read_parquet(INGESTED / "train_tte.parquet")
                held = np.isin(ids, labels.holdout_vehicles(tte, FLEET["holdout"], FLEET["seed"]))
                fleet = labels.fleet_references(ids[held], times[held], tte, windows)
                frame = labels.labels_from_tte(
                    ids[~held], times[~held], tte, windows, params["event_refs"],
                    params["censored"], params["censored_refs"], params["seed"],
                    params["test_like_refs"])
            else:
                given = pd.read_parquet(INGESTED / f"{split}_labels.parquet")
                frame = labels.labels_at_last_readout(ids, times, given)
            frame.to_parquet(tmp / f"{split}.parquet", index=False)
            distribution[split] = labels.class_distribution(frame, summary.num_classes)
            log.info("%s labels: %d, classes %s", split, len(frame), distribution[split])
        fleet.to_parquet(tmp / "fleet.parquet", index=False)
        distribution["fleet"] = {"vehicles": int(fleet["vehicle_id"].nunique()),
                                 "repaired": int(fleet.groupby("vehicle_id")["repaired"].first()
                                                 .sum()), "readouts": len(fleet)}
        log.info("fleet holdout: %s (no model sees them)", distribution["fleet"])
    atomic_write_json(METRICS, distribution)


if __name__ == "__main__":
    run_stage(main)
