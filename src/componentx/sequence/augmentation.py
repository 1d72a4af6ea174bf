"""Augmentation of the rare classes' training windows (``train.augment``).

Applied to training batches only, to the windows of every class but the most frequent one,
with a generator seeded from (seed, epoch, step): the same run gives the same batches, on CPU
and after a resume. Windows are left-padded (real readouts at the right end); the last
``EXTRA_CHANNELS`` inputs are the history channels and the age, which only ``time_warp``
touches.
"""

from __future__ import annotations

import torch

from componentx.data.features import HISTORY_CHANNELS
from componentx.sequence.dataset import Batch

EXTRA_CHANNELS = len(HISTORY_CHANNELS) + 1  # history channels, then the age
JITTER_STD = 0.05  # in z-score units
SCALING_STD = 0.1  # log-normal factor per window and feature
WARP_RANGE = 0.2  # gaps between readouts stretched by a factor in [0.8, 1.2]
MIXUP_ALPHA = 0.4  # weight of the partner window, drawn in [0, MIXUP_ALPHA]


def augment(batch: Batch, names: list[str], rare: torch.Tensor, generator: torch.Generator
            ) -> Batch:
    """``batch`` with ``names`` applied, in order, to the windows where ``rare`` is true.

    - ``jitter``: Gaussian noise on the readout features;
    - ``scaling``: each feature of a window multiplied by one log-normal factor;
    - ``time_warp``: the gaps between readouts stretched or shrunk (ages scaled by one factor);
    - ``crop``: only the last readouts kept, between half and all of them;
    - ``mixup``: readout features mixed with another window of the same class in the batch
      (the label stays; the partner's weight is at most ``MIXUP_ALPHA``).
    """
    if not names or not bool(rare.any()):
        return batch
    x, lengths = batch.x.clone(), batch.lengths.clone()
    n, window, inputs = x.shape
    features = inputs - EXTRA_CHANNELS
    chosen = rare.to(torch.bool)
    real = torch.arange(window)[None, :] >= window - lengths[:, None]  # left padding
    for name in names:
        if name == "jitter":
            noise = torch.randn((n, window, features), generator=generator) * JITTER_STD
            x[..., :features] += noise * (chosen[:, None, None] & real[:, :, None])
        elif name == "scaling":
            factor = torch.exp(torch.randn((n, 1, features), generator=generator) * SCALING_STD)
            x[..., :features] *= torch.where(chosen[:, None, None], factor, 1.0)
        elif name == "time_warp":
            factor = 1 + (torch.rand(n, generator=generator) * 2 - 1) * WARP_RANGE
            x[..., -1] *= torch.where(chosen, factor, 1.0)[:, None]
        elif name == "crop":
            keep = torch.ceil(lengths * (0.5 + 0.5 * torch.rand(n, generator=generator)))
            lengths = torch.where(chosen, keep.to(lengths.dtype).clamp(min=1), lengths)
            real = torch.arange(window)[None, :] >= window - lengths[:, None]
            x *= real[:, :, None]
        elif name == "mixup":
            partner = _same_class_partner(batch.y, generator)
            weight = torch.rand(n, generator=generator) * MIXUP_ALPHA
            weight = torch.where(chosen & (partner != torch.arange(n)), weight, 0.0)
            mixed = (1 - weight[:, None, None]) * x[..., :features] \
                + weight[:, None, None] * x[partner, :, :features]
            x[..., :features] = mixed * real[:, :, None]
        else:
            raise ValueError(f"unknown augmentation {name!r}")
    return Batch(x, lengths, batch.specs, batch.y)


def _same_class_partner(y: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each window, another window of the same class in the batch (itself if alone)."""
    order = torch.argsort(y * len(y) + torch.randperm(len(y), generator=generator))
    sorted_y = y[order]
    # Pair each window with the next one of its class in a random order, cyclically.
    partner = torch.empty_like(order)
    start = 0
    for end in [*torch.nonzero(sorted_y[1:] != sorted_y[:-1]).flatten().add(1).tolist(),
                len(y)]:
        group = order[start:end]
        partner[group] = torch.roll(group, -1)
        start = end
    return partner
