"""evaluate: the sequence model calibrated on the logits of the selection windows that train
wrote (validation, or out-of-fold), decided, and scored there and on test."""

from pathlib import Path

from componentx.data.layout import DatasetSummary
from componentx.decisions.evaluation import log_summary
from componentx.decisions.selection import plan_selection
from componentx.params import load_params
from componentx.reports.figures import write_evaluation_plots
from componentx.reports.tables import write_predictions
from componentx.runtime import atomic_dir, atomic_write_json, run_stage
from componentx.sequence.inference import evaluate_checkpoint
from componentx.tracking import log_evaluation, run_name

INGESTED, WINDOWS, INPUTS = Path("data/ingested"), Path("data/windows"), Path("data/inputs")
MODEL, SELECTION_LOGITS = Path("models/best.pt"), Path("models/selection.npz")
PREDICTIONS, PLOTS = Path("data/predictions"), Path("plots/evaluate")
METRICS = Path("metrics/evaluate.json")


def main() -> None:
    params = load_params()
    settings, size = params["evaluate"], params["window"]["size"]
    evaluation, checkpoint = evaluate_checkpoint(
        MODEL, SELECTION_LOGITS, plan_selection(WINDOWS, params["selection"]), INGESTED,
        WINDOWS, INPUTS, size, settings)
    with atomic_dir(PREDICTIONS) as predictions, atomic_dir(PLOTS) as plots:
        write_evaluation_plots(plots, evaluation, write_predictions(predictions, evaluation))
    atomic_write_json(METRICS, evaluation.report)
    for split in evaluation.scored:
        log_summary("sequence model", split, evaluation.report[split])
    name = run_name(DatasetSummary.load(INGESTED / "schema.json").digest, size,
                    checkpoint["config"]["arch"], checkpoint["fingerprint"])
    log_evaluation(params["tracking"], name, checkpoint["fingerprint"], evaluation.report,
                   [METRICS, *sorted(PLOTS.glob("summary_*.png"))])


if __name__ == "__main__":
    run_stage(main, "evaluate")
