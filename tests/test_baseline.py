"""Summary features of windows for the GBDT baseline, against a direct computation."""

from __future__ import annotations

import numpy as np
import pandas as pd

from componentx import baseline


def test_summary_features_by_hand():
    # Vehicle 5: readouts at t = 0, 2, 4, 10; vehicle 6: one readout at t = 1.
    values = np.array([[0.0, 1.0], [2.0, np.nan], [4.0, 3.0], [16.0, 5.0], [7.0, 7.0]])
    times = np.array([0.0, 2.0, 4.0, 10.0, 1.0])
    ids = np.array([5, 5, 5, 5, 6])
    windows = pd.DataFrame({"end_row": [4, 2, 5], "length": [4, 2, 1]})
    specs = np.array([[1], [1], [2]])
    table = baseline.summary_features(values, times, ids, windows, ["a", "b"], 3, specs, ["s"])
    first = table.iloc[0]
    # Last 3 readouts of the first window: rows 1..3 (t = 2, 4, 10).
    assert first["last_a"] == 16.0 and first["increment_a"] == 14.0
    assert first["slope_a"] == 14.0 / 8.0
    assert np.isnan(first["increment_b"])  # b is missing at the window's first recent readout
    assert first["time_since_first"] == 10.0 and first["readouts_so_far"] == 4
    assert first["missing_last"] == 0 and first["missing_recent"] == 1
    second = table.iloc[1]  # two readouts: t = 0, 2
    assert second["increment_a"] == 2.0 and second["missing_last"] == 1
    third = table.iloc[2]  # a single readout: no increment, no slope
    assert third["increment_a"] == 0.0 and np.isnan(third["slope_a"])
    assert third["time_since_first"] == 0.0 and third["s"] == 2


def test_fit_and_logits_cover_every_class():
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"x": rng.normal(size=300), "s": rng.integers(0, 3, 300)})
    labels = (features["x"] > 0).astype(int).to_numpy() * 2  # classes 0 and 2 only
    model = baseline.fit_baseline(features, labels, None, ["s"], seed=0, max_iter=20)
    logits = baseline.baseline_logits(model, features, num_classes=4)
    probs = np.exp(logits)
    assert logits.shape == (300, 4)
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, 1] < 1e-6).all() and (probs[:, 3] < 1e-6).all()
    assert (probs.argmax(axis=1) == labels).mean() > 0.9
