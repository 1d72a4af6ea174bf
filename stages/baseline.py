"""baseline: gradient-boosted trees on summary features of the same windows, scored exactly
like the sequence model (same labels, splits, calibration and decisions)."""

from pathlib import Path

from componentx.decisions.candidates import BY_NAME
from componentx.gbdt.model import fit_and_evaluate
from componentx.params import load_params
from componentx.reports.tables import write_candidate
from componentx.runtime import run_stage

INGESTED, WINDOWS = Path("data/ingested"), Path("data/windows")


def main() -> None:
    params = load_params()
    fitted, evaluation = fit_and_evaluate(INGESTED, WINDOWS, params["baseline"],
                                          params["evaluate"], params["compute"],
                                          params["selection"])
    write_candidate(BY_NAME["baseline"], fitted, evaluation)


if __name__ == "__main__":
    run_stage(main, "baseline")
