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


def test_the_gbdt_s_contributions_add_up_to_its_score():
    """LightGBM's per-feature contributions to the target class's raw score, plus the trees'
    expected value, are that score."""
    from componentx.candidates.interface import Readouts, Windows
    from componentx.gbdt.candidate import GBDT, window_features
    from componentx.gbdt.model import fit_trees

    rng = np.random.default_rng(0)
    vehicles, per = 150, 5
    ids = np.repeat(np.arange(vehicles), per)
    times = np.tile(np.arange(per, dtype=float), vehicles)
    values = np.cumsum(rng.gamma(2.0, 1.0, (len(ids), 2)), axis=0)
    labels = rng.integers(0, 3, vehicles)
    values[np.arange(vehicles) * per + per - 1, 0] += 5.0 * labels  # the last readout tells
    end = np.arange(1, vehicles + 1) * per
    windows = Windows(Readouts(values, times, ids), end, np.full(vehicles, per),
                      times[end - 1], np.zeros((vehicles, 0), dtype=np.int64))
    model = GBDT({})
    model.feature_names, model.spec_names, model.k, model.window_stats = ["a", "b"], [], 3, False
    model.num_classes, model.library = 3, "lightgbm"
    features = window_features(windows, *model._feature_settings())
    settings = {"library": "lightgbm", "learning_rate": 0.2, "max_leaf_nodes": 7,
                "min_samples_leaf": 5, "l2_regularization": 0.0, "seed": 0}
    model.trees = fit_trees(features, labels, None, [], settings, 20, 3)
    target = rng.integers(0, 3, vehicles)
    names, contributions = model.attributions(windows, target)
    assert names == list(features.columns) and contributions.shape == (vehicles, len(names))
    raw = model.trees.model.predict(features, raw_score=True)[np.arange(vehicles), target]
    expected = model.trees.model.predict(features, pred_contrib=True).reshape(
        vehicles, 3, -1)[np.arange(vehicles), target, -1]
    np.testing.assert_allclose(contributions.sum(axis=1) + expected, raw, atol=1e-9)
    top = names[int(np.abs(contributions).mean(axis=0).argmax())]
    assert top.endswith("_a")  # the feature that tells
