"""evaluate: calibrate on validation, decide, and score validation and test with models/best.pt;
paired against the baseline on the same vehicles."""

import json
from pathlib import Path

from componentx.data.layout import DatasetSummary
from componentx.decisions.evaluation import log_summary, paired_with_reference
from componentx.params import load_params
from componentx.reports.figures import write_evaluation_plots
from componentx.reports.tables import comparison_markdown, write_predictions
from componentx.runtime import atomic_dir, atomic_write_bytes, atomic_write_json, run_stage
from componentx.sequence.inference import evaluate_checkpoint
from componentx.tracking import log_evaluation, run_name

INGESTED, WINDOWS, INPUTS = Path("data/ingested"), Path("data/windows"), Path("data/inputs")
MODEL = Path("models/best.pt")
PREDICTIONS, PLOTS = Path("data/predictions"), Path("plots/evaluate")
METRICS, COMPARISON = Path("metrics/evaluate.json"), Path("metrics/comparison.md")
BASELINE_METRICS, BASELINE_PREDICTIONS = Path("metrics/baseline.json"), Path(
    "data/baseline_predictions")


def main() -> None:
    params = load_params()
    settings, size = params["evaluate"], params["window"]["size"]
    evaluation, checkpoint = evaluate_checkpoint(MODEL, INGESTED, WINDOWS, INPUTS, size, settings)
    report = evaluation.report
    with atomic_dir(PREDICTIONS) as predictions, atomic_dir(PLOTS) as plots:
        frames = write_predictions(predictions, evaluation)
        write_evaluation_plots(plots, evaluation, frames)
    report["paired_vs_baseline"] = {
        split: paired_with_reference(frame, BASELINE_PREDICTIONS, split, evaluation.cost_matrix,
                                     settings["bootstrap"], settings["seed"])
        for split, frame in frames.items()}
    atomic_write_json(METRICS, report)
    for split in frames:
        log_summary("sequence model", split, report[split])
    table = comparison_markdown(
        {"sequence model": report, "GBDT baseline": json.loads(BASELINE_METRICS.read_text())},
        report["paired_vs_baseline"])
    atomic_write_bytes(COMPARISON, table.encode())
    print(table)
    name = run_name(DatasetSummary.load(INGESTED / "schema.json").digest, size,
                    checkpoint["config"]["arch"], checkpoint["fingerprint"])
    log_evaluation(params["tracking"], name, checkpoint["fingerprint"], report,
                   [METRICS, COMPARISON, *sorted(PLOTS.glob("summary_*.png"))])


if __name__ == "__main__":
    run_stage(main, "evaluate")
