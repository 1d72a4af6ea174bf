"""Attributions: integrated gradients' completeness and padding, the GBDT's contributions,
and the top-feature table."""

from __future__ import annotations

import numpy as np
import torch
from conftest import model_config

from componentx.candidates.explain import top_features
from componentx.sequence.explain import integrated_gradients
from componentx.sequence.models import build_model


def test_attributions_add_up_and_ignore_padding():
    torch.manual_seed(0)
    model = build_model(model_config(arch="attention_lstm", n_features=4, num_classes=3,
                                     spec_cardinalities=[], hidden_size=8, head_hidden=8,
                                     num_heads=2, dropout=0.0))
    x = torch.randn(2, 6, 4)
    x[0, :2] = 0  # vehicle 0 has 4 real readouts
    lengths, specs = torch.tensor([4, 6]), torch.zeros((2, 0), dtype=torch.long)
    target = torch.tensor([2, 1])
    attributions = integrated_gradients(model, x, lengths, specs, target, steps=64)
    with torch.no_grad():
        gap = (model(x, lengths, specs) - model(torch.zeros_like(x), lengths, specs))
    expected = gap.gather(1, target[:, None]).squeeze(1)
    assert torch.allclose(attributions.sum(dim=(1, 2)), expected, atol=2e-3)
    assert (attributions[0, :2] == 0).all()


def test_top_features_per_vehicle():
    attributions = np.zeros((2, 4))
    attributions[0, 2] = 3.0
    attributions[0, 0] = -6.0
    attributions[1, 3] = 0.5
    table = top_features(attributions, ["a", "b", "c", "d"], np.array([7, 9]),
                         np.array([4, 1]), k=2)
    first = table[table["vehicle_id"] == 7]
    assert first["feature"].tolist() == ["a", "c"]
    assert first["attribution"].tolist() == [-6.0, 3.0]
    assert table[table["vehicle_id"] == 9].iloc[0]["feature"] == "d"
