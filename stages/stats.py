"""stats: per-feature statistics of the transformed train readouts, bucket by bucket, merged
exactly whatever the bucketing."""

from pathlib import Path

from componentx.data.features import train_stats
from componentx.params import load_params
from componentx.runtime import atomic_write_bytes, log, run_stage

WINDOWS, OUT = Path("data/windows"), Path("data/stats.json")


def main() -> None:
    params = load_params()
    settings = params["features"]
    stats = train_stats(WINDOWS, settings, params["compute"])
    atomic_write_bytes(OUT, stats.to_json().encode())
    log.info("stats of %d features (%s) from %d train readouts", len(stats.names),
             settings["transform"], max(stats.count))


if __name__ == "__main__":
    run_stage(main, "stats")
