"""evaluate: every candidate of gate.candidates calibrated on its selection logits
(validation, or out-of-fold), decided, and scored there and on test, the same way for all:
data/predictions/<name>/, metrics/candidates/<name>.json, plots/evaluate/<name>/."""

import json

from componentx.candidates.evaluation import evaluate_candidate
from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData
from componentx.decisions.evaluation import log_summary
from componentx.params import load_params
from componentx.reports.figures import write_evaluation_plots
from componentx.reports.tables import write_predictions
from componentx.runtime import atomic_dir, log, run_stage
from componentx.tracking import log_evaluation


def main() -> None:
    params = load_params()
    data, folders = PipelineData(params["window"]["size"]), CandidateFolders()
    with atomic_dir(folders.predictions) as predictions, atomic_dir(folders.plots) as plots, \
            atomic_dir(folders.metrics) as metrics:
        fitted, declined = folders.fitted(params)
        for name, reason in declined.items():
            log.info("%s was not fitted (%s): not evaluated", name, reason)
            (metrics / f"{name}.json").write_text(json.dumps({"declined": reason}) + "\n")
        for candidate in fitted:
            name = candidate.name
            evaluation = evaluate_candidate(name, params, data, folders)
            (predictions / name).mkdir()
            (plots / name).mkdir()
            write_evaluation_plots(plots / name, evaluation,
                                   write_predictions(predictions / name, evaluation))
            report = metrics / f"{name}.json"
            report.write_text(json.dumps(evaluation.report, indent=2) + "\n")
            for split in evaluation.scored:
                log_summary(candidate.title, split, evaluation.report[split])
            fit = folders.fit_report(name)
            log_evaluation(params["tracking"], fit["run"], fit["fingerprint"],
                           evaluation.report, [report, *sorted((plots / name).glob(
                               "summary_*.png"))])


if __name__ == "__main__":
    run_stage(main, "evaluate")
