"""gate: decide on validation, with paired intervals, whether this run's sequence model beats
the reference (the baseline by default), and record the verdict."""

from pathlib import Path

import pandas as pd

from componentx.gate import format_verdict, gate_verdict
from componentx.metrics import check_cost_matrix
from componentx.params import load_params
from componentx.runtime import atomic_write_json, run_stage
from componentx.schema import DatasetSummary

params = load_params()
GATE, COST_MATRIX = params["gate"], params["evaluate"]["cost_matrix"]
RUN, OUT = Path("data/predictions"), Path("metrics/gate.json")
INGESTED = Path("data/ingested")


def main() -> None:
    reference = Path(GATE["reference"])
    split = GATE["split"]
    if split not in ("validation", "test"):
        raise ValueError(f"gate.split must be 'validation' or 'test', got {split!r}")
    table = reference / f"{split}.parquet"
    if not table.exists():
        raise FileNotFoundError(f"gate.reference {reference} has no {split}.parquet (use the "
                                "baseline's data/baseline_predictions, or promote a run with "
                                "`componentx promote` and use promoted/predictions)")
    cost_matrix = check_cost_matrix(
        COST_MATRIX, DatasetSummary.load(INGESTED / "schema.json").num_classes)
    verdict = gate_verdict(pd.read_parquet(RUN / f"{split}.parquet"), pd.read_parquet(table),
                           cost_matrix, GATE["ece_tolerance"], GATE["bootstrap"], GATE["seed"])
    verdict.update(run="sequence model", reference=str(reference), split=split)
    atomic_write_json(OUT, verdict)
    print(format_verdict(verdict))


if __name__ == "__main__":
    run_stage(main)
