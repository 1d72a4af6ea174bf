"""Why did the model say that? Integrated-gradients attributions over time and feature."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn


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
