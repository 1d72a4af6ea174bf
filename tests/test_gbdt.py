"""The GBDT: summary features of windows against a direct computation, and the trees."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from componentx.data.features import signed_log1p
from componentx.decisions.metrics import OFFICIAL_COST
from componentx.errors import BundleError
from componentx.gbdt import features as gbdt_features
from componentx.gbdt import model as trees


def hand_made():
    """Vehicle 5: readouts at t = 0, 2, 4, 10 (histogram h missing at t = 2); vehicle 6: one
    readout at t = 1. Features: a counter c and a two-bin histogram h."""
    values = np.array([[0.0, 1, 1], [2, np.nan, np.nan], [4, 3, 1], [16, 5, 3], [7, 7, 1]])
    times = np.array([0.0, 2, 4, 10, 1])
    ids = np.array([5, 5, 5, 5, 6])
    windows = pd.DataFrame({"end_row": [4, 2, 5], "length": [4, 2, 1]})
    return gbdt_features.summary_features(values, times, ids, windows, ["c", "h_0", "h_1"], 3,
                                     np.array([[1], [1], [2]]), ["s"])


def test_families_group_histogram_bins():
    assert gbdt_features.families(["171_0", "167_0", "167_1", "x"]) == {
        "171_0": [0], "167": [1, 2], "x": [3]}


def test_summary_features_by_hand():
    table = hand_made()
    first = table.iloc[0]  # reference t = 10; recent horizon (k = 3) starts at t = 2
    assert first["last_c"] == 16
    assert first["rate1_c"] == 2.0 and first["ratek_c"] == 1.75 and first["rateall_c"] == 1.6
    assert first["relative_rate_c"] == pytest.approx(signed_log1p(1.75) - signed_log1p(1.6))
    # h is missing at t = 2: the last known value (t = 0) and its time are used instead.
    assert first["rate1_h"] == pytest.approx(4 / 6) and first["ratek_h"] == pytest.approx(0.6)
    assert first["share_h_0"] == pytest.approx(5 / 8)
    assert first["recent_share_h_0"] == pytest.approx(4 / 6 - 5 / 8)
    assert first["missing_h"] == 0 and first["missing_c"] == 0
    assert first["time_since_first"] == 10 and first["time_since_previous"] == 6
    assert first["readouts_so_far"] == 4
    second = table.iloc[1]  # reference t = 2, where h is missing
    assert second["rate1_c"] == 1.0 and second["missing_h"] == 1
    assert second["last_h_0"] == 1 and np.isnan(second["rate1_h"])
    third = table.iloc[2]  # a single readout: no rates, no previous readout
    assert np.isnan(third["rate1_c"]) and np.isnan(third["time_since_previous"])
    assert third["time_since_first"] == 0 and third["readouts_so_far"] == 1 and third["s"] == 2


def test_features_never_look_after_the_reference_readout():
    table = hand_made()
    values = np.array([[0.0, 1, 1], [2, np.nan, np.nan], [4, 3, 1], [16, 5, 3], [7, 7, 1]])
    later = values.copy()
    later[3] = [1e6, 1e6, 1e6]  # a change after the second window's reference readout
    moved = gbdt_features.summary_features(later, np.array([0.0, 2, 4, 10, 1]),
                                      np.array([5, 5, 5, 5, 6]),
                                      pd.DataFrame({"end_row": [4, 2, 5], "length": [4, 2, 1]}),
                                      ["c", "h_0", "h_1"], 3, np.array([[1], [1], [2]]), ["s"])
    pd.testing.assert_series_equal(table.iloc[1], moved.iloc[1])
    assert not table.iloc[0].equals(moved.iloc[0])


def fitted_on_a_toy_task(library):
    """Trees on a task where x decides classes 0, 2 and 4 (1 and 3 never occur)."""
    rng = np.random.default_rng(0)
    n = 600
    features = pd.DataFrame({"x": rng.normal(size=n), "s": rng.integers(0, 3, n)})
    labels = np.where(features["x"] > 1.0, 4, np.where(features["x"] > 0.5, 2, 0))
    cost = np.array(OFFICIAL_COST, dtype=float)
    priors = np.bincount(labels, minlength=5) + 0.5
    settings = {"library": library, "max_iter": 60, "learning_rate": 0.2, "max_leaf_nodes": 7,
                "min_samples_leaf": 5, "l2_regularization": 0.0, "seed": 0, "patience": 20}
    fitted = trees.fit_tuned_trees(features[:400], labels[:400], None, features[400:],
                                   labels[400:], priors / priors.sum(), cost, ["s"], settings)
    return fitted, features, labels, priors / priors.sum(), cost


@pytest.mark.parametrize("library", ["lightgbm", "sklearn"])
def test_fit_keeps_the_best_validation_iteration_and_covers_every_class(library):
    fitted, features, labels, priors, cost = fitted_on_a_toy_task(library)
    n = len(labels)
    assert fitted.iterations == trees.best_iteration(fitted.tuning_costs)
    kept = fitted.probabilities(features[400:], num_classes=5)
    assert trees.validation_cost(kept, labels[400:], priors, cost) == \
        fitted.tuning_costs[fitted.iterations - 1]
    logits = fitted.logits(features, num_classes=5)
    probs = np.exp(logits)
    assert logits.shape == (n, 5) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs[:, 1] < 0.05).all() and (probs[:, 3] < 0.05).all()  # never seen
    assert (probs.argmax(axis=1) == labels).mean() > 0.9


@pytest.mark.parametrize("library", ["lightgbm", "sklearn"])
def test_a_fitted_model_is_saved_as_data_and_loads_to_the_same_predictions(tmp_path, library):
    fitted, features, *_ = fitted_on_a_toy_task(library)
    fitted.save(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".pkl", ".pickle", ".joblib")]
    loaded = trees.FittedTrees.load(tmp_path, library, fitted.iterations)
    assert np.array_equal(loaded.logits(features, 5), fitted.logits(features, 5))


def test_fitting_and_evaluating_the_trees_imports_no_torch():
    code = ("import sys, numpy as np\n"
            "from test_gbdt import fitted_on_a_toy_task\n"
            "from componentx.decisions.evaluation import evaluate_logits\n"
            "fitted, features, labels, priors, cost = fitted_on_a_toy_task('lightgbm')\n"
            "logits = {s: fitted.logits(features, 5) for s in ('validation', 'test')}\n"
            "settings = {'calibration': 'temperature', 'priors': 'validation', 'folds': 5,\n"
            "            'decision': 'expected_cost', 'bootstrap': 20, 'seed': 0}\n"
            "evaluate_logits(logits, {s: labels for s in logits}, {s: labels for s in logits},\n"
            "                priors, cost, settings)\n"
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=Path(__file__).parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_a_scikit_learn_file_with_other_types_is_refused(tmp_path):
    import fractions

    import skops.io

    fitted, *_ = fitted_on_a_toy_task("sklearn")
    fitted.save(tmp_path)
    skops.io.dump({"model": fitted.model, "extra": fractions.Fraction(1, 3)},
                  tmp_path / trees.SKLEARN_FILE)
    with pytest.raises(BundleError, match="refused"):
        trees.FittedTrees.load(tmp_path, "sklearn", fitted.iterations)


def test_best_iteration_is_smoothed():
    noisy = np.array([10.0, 9, 1, 9, 8, 7, 6, 6, 6, 6, 6, 6])  # a lone dip at iteration 3
    assert trees.best_iteration(noisy, smoothing=1) == 3
    assert trees.best_iteration(noisy, smoothing=5) > 6


def test_window_statistics_by_hand():
    values = np.array([[0.0, 1, 1], [2, np.nan, np.nan], [4, 3, 1], [16, 5, 3], [7, 7, 1]])
    windows = pd.DataFrame({"end_row": [4, 2, 5], "length": [4, 2, 1]})
    stats = gbdt_features.summary_features(  # one vehicle's readouts, one time unit apart
        values, np.arange(5.0), np.zeros(5, dtype=np.int64), windows, ["c", "h_0", "h_1"], 2,
        np.zeros((3, 0)), [], window_stats=True)
    assert stats["window_mean_c"].tolist() == [5.5, 1.0, 7.0]
    assert stats["window_max_c"].tolist() == [16, 2, 7] and stats["window_min_c"][0] == 0
    assert stats["window_std_c"][1] == pytest.approx(1.0)
    # Where the maximum is: 0 at the window's first readout, 1 at its last (NaN skipped).
    assert stats["window_argmax_c"].tolist() == [1.0, 1.0, 0.0]
    assert stats["window_argmax_h_0"][0] == 1.0 and stats["window_argmax_h_1"][0] == 1.0
    assert stats["window_mean_h_0"][0] == 3.0  # over the three observed readouts
    assert stats["window_max_h_0"][1] == 1.0  # [1, NaN]
    assert "window_mean_c" not in hand_made()  # off unless asked for


def test_readouts_without_histograms_have_rates_and_no_shares():
    """Single quantities only (no family of bins): every rate and last value, no shares."""
    values = np.array([[0.0, 5], [2, 5], [4, np.nan], [1, 1]])
    features = gbdt_features.summary_features(
        values, np.array([0.0, 1, 2, 0]), np.array([7, 7, 7, 8]),
        pd.DataFrame({"end_row": [3, 4], "length": [3, 1]}), ["a", "b"], 2, np.zeros((2, 0)),
        [])
    assert features["ratek_a"].tolist()[0] == 2.0 and features["last_b"].tolist() == [5, 1]
    assert features["rateall_b"].tolist()[0] == 0.0  # b last observed at row 1, not row 2
    assert not [c for c in features.columns if "share" in c]


def test_cumulative_readouts_are_told_from_levels():
    ids = np.array([1, 1, 1, 2, 2, 2])
    counters = np.array([[0.0], [1], [3], [5], [5], [9]])
    levels = np.array([[0.0], [2], [1], [5], [3], [4]])
    assert gbdt_features.step_counts(counters, ids) == (4, 4)
    assert gbdt_features.step_counts(levels, ids) == (4, 2)
    assert gbdt_features.is_cumulative(4, 4) and not gbdt_features.is_cumulative(4, 2)
    # The drop from one vehicle to the next is not a step.
    assert gbdt_features.step_counts(np.array([[9.0], [10], [0], [1]]),
                                         np.array([1, 1, 2, 2])) == (2, 2)
    # Bucket by bucket: the counts add up to those of the whole.
    halves = [gbdt_features.step_counts(levels[part], ids[part])
              for part in (slice(0, 3), slice(3, 6))]
    assert tuple(np.sum(halves, axis=0)) == (4, 2)


def test_tree_sizes_follow_the_training_windows():
    auto = {"min_samples_leaf": "auto", "max_leaf_nodes": "auto"}
    assert trees.resolve_size_settings(auto, 36) == {"min_samples_leaf": 2,
                                                       "max_leaf_nodes": 4}
    assert trees.resolve_size_settings(auto, 300) == {"min_samples_leaf": 6,
                                                        "max_leaf_nodes": 15}
    assert trees.resolve_size_settings(auto, 12_061) == {"min_samples_leaf": 20,
                                                           "max_leaf_nodes": 31}
    fixed = {"min_samples_leaf": 7, "max_leaf_nodes": 9}
    assert trees.resolve_size_settings(fixed, 36) == fixed
