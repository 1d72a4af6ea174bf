"""labels: one row per (vehicle, reference time) with its class, for every split; and the fleet
holdout (train vehicles set aside, with every readout as a reference, used by no model)."""

from pathlib import Path

from componentx.data.labels import label_splits
from componentx.params import load_params
from componentx.runtime import atomic_dir, atomic_write_json, run_stage

INGESTED, OUT, METRICS = Path("data/ingested"), Path("data/labels"), Path("metrics/labels.json")


def main() -> None:
    params = load_params()
    with atomic_dir(OUT) as tmp:
        distribution = label_splits(INGESTED, tmp, params["labels"], params["fleet"],
                                    params["compute"])
    atomic_write_json(METRICS, distribution)


if __name__ == "__main__":
    run_stage(main, "labels")
