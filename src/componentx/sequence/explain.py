"""Why did the sequence model say that? Integrated-gradients attributions over time and
input."""

from __future__ import annotations

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
