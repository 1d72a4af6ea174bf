"""baseline: gradient-boosted trees on summary features of the same windows, scored exactly
like the sequence model (same labels, splits, calibration and decisions)."""

from pathlib import Path

from componentx.decisions.evaluation import log_summary
from componentx.gbdt.model import fit_and_evaluate
from componentx.params import load_params
from componentx.reports.tables import write_predictions
from componentx.runtime import atomic_dir, atomic_write_json, run_stage

INGESTED, WINDOWS = Path("data/ingested"), Path("data/windows")
PREDICTIONS, METRICS = Path("data/baseline_predictions"), Path("metrics/baseline.json")
MODEL = Path("models/baseline")


def main() -> None:
    params = load_params()
    fitted, evaluation = fit_and_evaluate(INGESTED, WINDOWS, params["baseline"],
                                          params["evaluate"], params["compute"])
    with atomic_dir(PREDICTIONS) as tmp:
        write_predictions(tmp, evaluation)
    with atomic_dir(MODEL) as tmp:
        fitted.save(tmp)
    atomic_write_json(METRICS, evaluation.report)
    for split in evaluation.scored:
        log_summary("baseline", split, evaluation.report[split])


if __name__ == "__main__":
    run_stage(main, "baseline")
