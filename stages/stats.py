"""stats: per-feature statistics of the transformed train readouts, in one streaming pass."""

import json
from pathlib import Path

import numpy as np

from componentx.features import compute_stats
from componentx.params import load_params
from componentx.runtime import atomic_write_bytes, log, run_stage

params = load_params()["features"]
WINDOWS = Path("data/windows")
OUT = Path("data/stats.json")


def main() -> None:
    features = json.loads((WINDOWS / "features.json").read_text())
    stats = compute_stats(np.load(WINDOWS / "train_values.npy", mmap_mode="r"),
                          np.load(WINDOWS / "train_time.npy"),
                          np.load(WINDOWS / "train_vehicle.npy"),
                          features, params["counters"], params["transform"])
    atomic_write_bytes(OUT, stats.to_json().encode())
    log.info("stats of %d features (%s) from %d train readouts", len(stats.names),
             params["transform"], max(stats.count))


if __name__ == "__main__":
    run_stage(main)
