"""export: every fitted candidate of gate.candidates as a self-contained bundle
(models/bundles/<name>), with the alarm thresholds the fleet view picked for it and the drift
reference of the train readouts, and the one the gate ships as models/bundle, the artifact
`componentx predict`, `componentx serve` and the model registry use."""

import json
import shutil
from pathlib import Path

from componentx.candidates.folders import CandidateFolders
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage
from componentx.serving.export import shipped_bundle, write_bundles

INGESTED, WINDOWS = Path("data/ingested"), Path("data/windows")
GATE, FLEET = Path("metrics/gate.json"), Path("metrics/fleet.json")
BUNDLES, SHIPPED = Path("models/bundles"), Path("models/bundle")


def main() -> None:
    params = load_params()
    gate = json.loads(GATE.read_text())
    with atomic_dir(BUNDLES) as tmp:
        write_bundles(tmp, params, INGESTED, WINDOWS, gate, json.loads(FLEET.read_text()),
                      CandidateFolders())
    chosen = shipped_bundle(gate, BUNDLES)
    with atomic_dir(SHIPPED) as tmp:
        shutil.copytree(chosen, tmp, dirs_exist_ok=True)
    log.info("bundles written to %s; the gate ships %s (copied to %s)", BUNDLES, chosen,
             SHIPPED)


if __name__ == "__main__":
    run_stage(main, "export")
