"""gate: decide on validation, with paired intervals, whether this run's sequence model beats
the reference (the baseline by default), and record the verdict."""

from pathlib import Path

from componentx.decisions.gate import format_verdict, gate_against_reference
from componentx.params import load_params
from componentx.runtime import atomic_write_json, run_stage

INGESTED, RUN, OUT = Path("data/ingested"), Path("data/predictions"), Path("metrics/gate.json")


def main() -> None:
    params = load_params()
    verdict = gate_against_reference(RUN, Path(params["gate"]["reference"]), INGESTED,
                                     params["gate"], params["evaluate"]["cost_matrix"])
    atomic_write_json(OUT, verdict)
    print(format_verdict(verdict))


if __name__ == "__main__":
    run_stage(main, "gate")
