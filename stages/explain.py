"""explain: integrated-gradients attributions (and attention weights where the model has
them) for the test vehicles the model flags as most at risk; a plot and a small table."""

from pathlib import Path

import pandas as pd

from componentx.data.layout import DatasetSummary
from componentx.decisions.rules import risk_title
from componentx.params import load_params
from componentx.reports.figures import attributions_figure
from componentx.runtime import atomic_dir, log, run_stage
from componentx.sequence.explain import explain_riskiest

INGESTED, WINDOWS, INPUTS = Path("data/ingested"), Path("data/windows"), Path("data/inputs")
STATS = Path("data/stats.json")
MODEL, PREDICTIONS = Path("models/best.pt"), Path("data/predictions/test.parquet")
OUT = Path("plots/explain")


def main() -> None:
    params = load_params()
    risk_class = params["fleet"]["risk_class"]
    found = explain_riskiest(MODEL, INGESTED, WINDOWS, INPUTS, STATS, PREDICTIONS,
                             params["window"]["size"], params["explain"], risk_class)
    summary = DatasetSummary.load(INGESTED / "schema.json")
    title = risk_title(summary.class_windows(params["labels"]["windows"]), risk_class)
    with atomic_dir(OUT) as tmp:
        found.top.to_csv(tmp / "top_features.csv", index=False)
        if found.attention is not None:
            pd.DataFrame(found.attention, index=found.vehicles).to_csv(
                tmp / "attention_pooling.csv", index_label="vehicle_id")
        attributions_figure(tmp / "attributions.png", found.attributions, found.lengths,
                            found.top, found.names, found.vehicles, found.predicted, found.risk,
                            title)
    log.info("explained %d test vehicles; top features:\n%s", len(found.vehicles),
             found.top[found.top["rank"] <= 3].to_string(index=False))


if __name__ == "__main__":
    run_stage(main, "explain")
