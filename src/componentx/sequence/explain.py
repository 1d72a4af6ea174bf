"""Why did the model say that? Integrated-gradients attributions over time and feature."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from componentx.data.features import FeatureStats
from componentx.data.layout import DatasetSummary
from componentx.data.window_set import input_names, load_window_set
from componentx.decisions.rules import failure_risk
from componentx.sequence.checkpoints import load_model
from componentx.sequence.dataset import batch_of


def integrated_gradients(model: nn.Module, x: torch.Tensor, lengths: torch.Tensor,
                         specs: torch.Tensor, target: torch.Tensor, steps: int = 32
                         ) -> torch.Tensor:
    """Attributions (batch, window, inputs) of the ``target`` logit, from an all-zero baseline
    (the train mean after normalisation). They add up to logit(x) - logit(baseline)."""
    model.eval()
    total = torch.zeros_like(x)
    for alpha in (torch.arange(steps, dtype=x.dtype) + 0.5) / steps:  # midpoint rule
        point = (alpha * x).requires_grad_(True)
        logits = model(point, lengths, specs)
        chosen = logits.gather(1, target[:, None]).sum()
        (gradient,) = torch.autograd.grad(chosen, point)
        total += gradient
    return x * total / steps


def top_features(attributions: np.ndarray, names: list[str], vehicle_ids: np.ndarray,
                 predicted: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` inputs with the largest attribution (summed over time) per vehicle."""
    per_feature = attributions.sum(axis=1)
    rows = []
    for i, vehicle in enumerate(vehicle_ids):
        order = np.argsort(-np.abs(per_feature[i]))[:k]
        for rank, j in enumerate(order, start=1):
            rows.append({"vehicle_id": int(vehicle), "predicted": int(predicted[i]),
                         "rank": rank, "feature": names[j],
                         "attribution": float(per_feature[i, j])})
    return pd.DataFrame(rows)


@dataclass
class Explanation:
    """Attributions of the riskiest test vehicles: (vehicles, window, inputs), with each
    vehicle's window length, decision and risk, the input names, the top features per
    vehicle and, for attention models, the pooling weights (vehicles, encoder steps: readouts,
    or patches of them where the model reads patches)."""

    vehicles: np.ndarray
    attributions: np.ndarray
    lengths: np.ndarray
    predicted: np.ndarray
    risk: np.ndarray
    names: list[str]
    top: pd.DataFrame
    attention: np.ndarray | None


def explain_riskiest(model_path: Path, ingested: Path, windows: Path, inputs: Path,
                     stats: Path, predictions: Path, size: int, settings: dict, risk_class: int
                     ) -> Explanation:
    """Integrated gradients of the decided class (or class 1 where the decision is 0) for the
    ``settings["vehicles"]`` test vehicles of ``predictions`` with the highest failure risk
    (:func:`~componentx.decisions.rules.failure_risk` of ``risk_class``); ``settings`` is
    ``params.explain``."""
    model, _ = load_model(model_path)
    feature_stats = FeatureStats.load(stats)
    specs = DatasetSummary.load(ingested / "schema.json").spec_columns
    test = load_window_set(windows, inputs, ingested, "test", specs, size)
    frame = pd.read_parquet(predictions)
    probs = frame[[c for c in frame.columns if c.startswith("prob_")]].to_numpy()
    risk = failure_risk(probs, risk_class)
    chosen = np.argsort(-risk, kind="stable")[: settings["vehicles"]]
    batch = batch_of(test, chosen)
    predicted = frame["predicted"].to_numpy()[chosen]
    target = torch.as_tensor(np.where(predicted > 0, predicted, 1))
    attributions = integrated_gradients(model, batch.x, batch.lengths, batch.specs, target,
                                        settings["steps"]).detach().numpy()
    names = input_names(feature_stats)
    vehicles = frame["vehicle_id"].to_numpy()[chosen]
    with torch.no_grad():
        model(batch.x, batch.lengths, batch.specs)
    attention = model.attention().get("pooling")
    return Explanation(vehicles, attributions, batch.lengths.numpy(), predicted, risk[chosen],
                       names, top_features(attributions, names, vehicles, predicted,
                                           settings["top_features"]),
                       None if attention is None else attention.numpy())
