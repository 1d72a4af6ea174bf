"""Rare-class augmentation: only rare windows change, padding stays empty, seeded."""

from __future__ import annotations

import pytest
import torch

from componentx.params import AUGMENTATIONS
from componentx.sequence.augmentation import EXTRA_CHANNELS, augment
from componentx.sequence.dataset import Batch

FEATURES, WINDOW = 4, 6


def batch(seed=0):
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([6, 3, 4, 1, 5, 2])
    x = torch.randn((6, WINDOW, FEATURES + EXTRA_CHANNELS), generator=generator)
    x *= (torch.arange(WINDOW)[None, :] >= WINDOW - lengths[:, None])[:, :, None]  # left pad
    y = torch.tensor([0, 1, 1, 0, 2, 1])
    return Batch(x, lengths, torch.zeros((6, 0), dtype=torch.long), y)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_only_rare_windows_change_and_padding_stays_empty(name):
    original = batch()
    rare = original.y != 0
    out = augment(original, [name], rare, torch.Generator().manual_seed(1))
    assert torch.equal(out.x[~rare], original.x[~rare])
    assert torch.equal(out.y, original.y)
    assert not torch.equal(out.x[rare], original.x[rare])
    padding = torch.arange(WINDOW)[None, :] < WINDOW - out.lengths[:, None]
    assert (out.x[padding] == 0).all()
    again = augment(batch(), [name], rare, torch.Generator().manual_seed(1))
    assert torch.equal(out.x, again.x) and torch.equal(out.lengths, again.lengths)
    other = augment(batch(), [name], rare, torch.Generator().manual_seed(2))
    assert not torch.equal(out.x, other.x)


def test_what_each_augmentation_touches():
    original = batch()
    rare = original.y != 0
    warped = augment(original, ["time_warp"], rare, torch.Generator().manual_seed(3))
    assert torch.equal(warped.x[..., :-1], original.x[..., :-1])  # only the age channel
    real = original.x[rare][..., -1] != 0
    ratio = warped.x[rare][..., -1][real] / original.x[rare][..., -1][real]
    assert ((ratio - 1).abs() <= 0.2 + 1e-6).all() and (ratio != 1).all()
    cropped = augment(original, ["crop"], rare, torch.Generator().manual_seed(3))
    assert (cropped.lengths <= original.lengths).all()
    assert (cropped.lengths >= torch.ceil(original.lengths / 2)).all()
    kept = torch.arange(WINDOW)[None, :] >= WINDOW - cropped.lengths[:, None]
    assert torch.equal(cropped.x[kept], original.x[kept])  # the last readouts, unchanged
    scaled = augment(original, ["scaling"], rare, torch.Generator().manual_seed(3))
    assert torch.equal(scaled.x[..., FEATURES:], original.x[..., FEATURES:])


def test_mixup_mixes_within_a_class():
    original = batch()
    rare = original.y != 0
    mixed = augment(original, ["mixup"], rare, torch.Generator().manual_seed(4))
    # Class 2 has one window: no partner, nothing to mix.
    assert torch.equal(mixed.x[4], original.x[4])
    class_1 = torch.tensor([1, 2, 5])
    assert not torch.equal(mixed.x[class_1], original.x[class_1])
