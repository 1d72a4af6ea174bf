"""inputs: every split's model inputs (transformed, normalised with the train statistics, the
history channels), float32 per bucket: what training, evaluation and explanations read window
by window, so no process holds a split."""

import json
from pathlib import Path

from componentx.data.features import FeatureStats, write_inputs
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage

WINDOWS, STATS, OUT = Path("data/windows"), Path("data/stats.json"), Path("data/inputs")


def main() -> None:
    params = load_params()
    with atomic_dir(OUT) as tmp:
        write_inputs(WINDOWS, FeatureStats.load(STATS), tmp, params["compute"])
    rows = json.loads((WINDOWS / "manifest.json").read_text())["rows"]
    log.info("model inputs of %s readouts", {split: sum(r) for split, r in rows.items()})


if __name__ == "__main__":
    run_stage(main, "inputs")
