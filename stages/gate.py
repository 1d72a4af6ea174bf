"""gate: compare this run's metrics with a reference and record the verdict."""

import json
from pathlib import Path

from componentx.gate import format_verdict, gate_verdict
from componentx.runtime import atomic_write_json, load_params, run_stage

GATE = load_params()["gate"]
RUN, OUT = Path("metrics/evaluate.json"), Path("metrics/gate.json")


def main() -> None:
    reference = Path(GATE["reference"])
    if not reference.exists():
        raise FileNotFoundError(f"gate.reference {reference} does not exist (promote a run "
                                "with `python -m componentx.promote`, or use the baseline's "
                                "metrics/baseline.json)")
    verdict = gate_verdict(json.loads(RUN.read_text()), json.loads(reference.read_text()),
                           GATE["split"], GATE["ece_tolerance"])
    verdict["reference"] = str(reference)
    atomic_write_json(OUT, verdict)
    print(format_verdict(verdict, str(reference)))


if __name__ == "__main__":
    run_stage(main)
