"""export: both models as self-contained bundles (models/bundles/{sequence,baseline}), and the
one the gate ships as models/bundle, the artifact `componentx predict` and the model registry
use."""

import json
import shutil
from pathlib import Path

from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage
from componentx.serving.export import shipped_bundle, write_bundles

INGESTED, STATS, METRICS = Path("data/ingested"), Path("data/stats.json"), Path("metrics")
MODEL, BASELINE_MODEL = Path("models/best.pt"), Path("models/baseline")
BUNDLES, SHIPPED = Path("models/bundles"), Path("models/bundle")


def main() -> None:
    params = load_params()
    with atomic_dir(BUNDLES) as tmp:
        write_bundles(tmp, params, INGESTED, STATS, MODEL, BASELINE_MODEL, METRICS)
    chosen = shipped_bundle(json.loads((METRICS / "gate.json").read_text()), BUNDLES)
    with atomic_dir(SHIPPED) as tmp:
        shutil.copytree(chosen, tmp, dirs_exist_ok=True)
    log.info("bundles written to %s; the gate ships %s (copied to %s)", BUNDLES, chosen,
             SHIPPED)


if __name__ == "__main__":
    run_stage(main, "export")
