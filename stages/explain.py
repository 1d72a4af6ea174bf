"""explain: the inputs behind the decisions of the gate's chosen candidate for the test
vehicles with the highest failure risk (its own attributions: integrated gradients for a
sequence model, LightGBM's per-feature contributions for the GBDT), as a table and a figure."""

import json
from pathlib import Path

import pandas as pd

from componentx.candidates.explain import explain_riskiest
from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData
from componentx.candidates.registry import load_candidate, registration
from componentx.decisions.rules import risk_title
from componentx.params import load_params
from componentx.reports.figures import attributions_figure, message_figure
from componentx.runtime import atomic_dir, log, run_stage

GATE, OUT = Path("metrics/gate.json"), Path("plots/explain")


def main() -> None:
    params = load_params()
    data, folders = PipelineData(params["window"]["size"]), CandidateFolders()
    name = json.loads(GATE.read_text())["chosen"]
    title = registration(name).title
    found = explain_riskiest(load_candidate(name, folders.models / name),
                             data.labelled("test"),
                             pd.read_parquet(folders.predictions / name / "test.parquet"),
                             params["fleet"]["risk_class"], params["explain"]["vehicles"],
                             params["explain"]["top_features"])
    risk = risk_title(data.summary.class_windows(params["labels"]["windows"]),
                      params["fleet"]["risk_class"])
    with atomic_dir(OUT) as tmp:
        if found.top is None:
            message = f"The chosen candidate, {title}, has no attributions."
            (tmp / "top_features.csv").write_text("vehicle_id,predicted,rank,feature,"
                                                  "attribution\n")
            message_figure(tmp / "attributions.png", message)
            log.info(message)
            return
        found.top.to_csv(tmp / "top_features.csv", index=False)
        attributions_figure(tmp / "attributions.png", found.top, found.vehicles,
                            found.predicted, found.risk, risk, title)
    log.info("explained %d test vehicles by the %s; top features:\n%s", len(found.vehicles),
             title, found.top[found.top["rank"] <= 3].to_string(index=False))


if __name__ == "__main__":
    run_stage(main, "explain")
