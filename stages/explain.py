"""explain: integrated-gradients attributions (and attention weights where the model has
them) for the test vehicles the model flags as most at risk; a plot and a small table."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

from componentx.dataset import input_names, load_window_set
from componentx.explain import integrated_gradients, top_features
from componentx.features import FeatureStats
from componentx.params import load_params
from componentx.runtime import atomic_dir, log, run_stage
from componentx.schema import DatasetSummary
from componentx.training import load_model

matplotlib.use("Agg")
import matplotlib.pyplot as plt

params = load_params()
EXPLAIN, WINDOW_SIZE = params["explain"], params["window"]["size"]
INGESTED, WINDOWS, STATS = Path("data/ingested"), Path("data/windows"), Path("data/stats.json")
PREDICTIONS, OUT = Path("data/predictions/test.parquet"), Path("plots/explain")


def main() -> None:
    model, _ = load_model(Path("models/best.pt"))
    stats = FeatureStats.load(STATS)
    specs = DatasetSummary.load(INGESTED / "schema.json").spec_columns
    windows = load_window_set(WINDOWS, INGESTED, "test", stats, specs, WINDOW_SIZE)
    predictions = pd.read_parquet(PREDICTIONS)
    risk = 1 - predictions["prob_0"].to_numpy()
    chosen = np.argsort(-risk, kind="stable")[: EXPLAIN["vehicles"]]
    batch = windows.batch(chosen)
    predicted = predictions["predicted"].to_numpy()[chosen]
    target = torch.as_tensor(np.where(predicted > 0, predicted, 1))
    attributions = integrated_gradients(model, batch.x, batch.lengths, batch.specs, target,
                                        EXPLAIN["steps"]).detach().numpy()
    names = input_names(stats)
    vehicles = predictions["vehicle_id"].to_numpy()[chosen]
    table = top_features(attributions, names, vehicles, predicted, EXPLAIN["top_features"])
    with torch.no_grad():
        model(batch.x, batch.lengths, batch.specs)
    attention = model.attention().get("pooling")

    with atomic_dir(OUT) as tmp:
        table.to_csv(tmp / "top_features.csv", index=False)
        if attention is not None:
            pd.DataFrame(attention.numpy(), index=vehicles).to_csv(
                tmp / "attention_pooling.csv", index_label="vehicle_id")
        figure, axes = plt.subplots(len(chosen), 1, figsize=(10, 2.6 * len(chosen)),
                                    squeeze=False)
        for i, axis in enumerate(axes[:, 0]):
            top = table[table["vehicle_id"] == vehicles[i]]["feature"].tolist()
            columns = [names.index(f) for f in top]
            length = int(batch.lengths[i])
            heat = attributions[i][WINDOW_SIZE - length:][:, columns].T
            limit = np.abs(heat).max() or 1.0
            image = axis.imshow(heat, aspect="auto", cmap="coolwarm", vmin=-limit, vmax=limit)
            axis.set_yticks(range(len(top)), top, fontsize=7)
            axis.set_xlabel("readout (oldest → newest)", fontsize=8)
            axis.set_title(f"vehicle {vehicles[i]}: predicted class {predicted[i]}, "
                           f"P(failure within 48) = {risk[chosen[i]]:.2f}", fontsize=9)
            figure.colorbar(image, ax=axis, fraction=0.02)
        figure.tight_layout()
        figure.savefig(tmp / "attributions.png", dpi=90)
        plt.close(figure)
    log.info("explained %d test vehicles; top features:\n%s", len(chosen),
             table[table["rank"] <= 3].to_string(index=False))


if __name__ == "__main__":
    run_stage(main)
