"""The official cost and the metrics, on hand-computed examples."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from componentx.decisions import metrics
from componentx.errors import ParamsError

COST = np.array(metrics.OFFICIAL_COST, dtype=float)


def test_official_cost_on_hand_computed_confusions():
    # actual 4 predicted 0 costs 500; actual 0 predicted 4 costs 10; 1 -> 2 costs 7.
    y = np.array([4, 0, 1, 2, 2])
    pred = np.array([0, 4, 2, 2, 0])
    assert metrics.confusion(y, pred, 5)[4, 0] == 1
    assert metrics.total_cost(y, pred, COST) == 500 + 10 + 7 + 0 + 300
    assert metrics.total_cost(y, y, COST) == 0


@pytest.mark.parametrize(("counts", "expected"), [
    ((4910, 16, 14, 30, 76), 57_400), ((4903, 26, 15, 41, 60), 56_100),
])
def test_always_zero_reproduces_the_reference_costs(counts, expected):
    y = np.repeat(np.arange(5), counts)
    assert metrics.total_cost(y, np.zeros_like(y), COST) == expected


def test_decision_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    result = metrics.decision_metrics(y, pred, COST)
    assert result["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert result["weighted_f1"] == pytest.approx(f1_score(y, pred, average="weighted"))
    assert result["accuracy"] == pytest.approx((y == pred).mean())
    assert result["per_class"]["class_3"]["support"] == (y == 3).sum()
    assert result["cost_per_vehicle"] == pytest.approx(result["cost_total"] / 300)


def test_probability_metrics_on_a_perfect_and_a_flat_model():
    y = np.array([0, 1, 2, 0])
    perfect = np.eye(3)[y]
    good = metrics.probability_metrics(y, perfect)
    assert good["brier"] == 0 and good["ece"] == 0
    assert good["roc_auc"]["macro"] == 1 and good["pr_auc"]["macro"] == 1
    assert good["classwise_ece"]["macro"] == 0
    flat = metrics.probability_metrics(y, np.full((4, 3), 1 / 3))
    assert flat["brier"] == pytest.approx(2 / 3)
    assert flat["log_loss"] == pytest.approx(np.log(3))
    assert flat["ece"] == pytest.approx(abs(0.5 - 1 / 3))  # top label is class 0: half right
    # Per class: class 0 is half the vehicles, classes 1 and 2 a quarter each, all at 1/3.
    assert flat["classwise_ece"]["class_0"] == pytest.approx(0.5 - 1 / 3)
    assert flat["classwise_ece"]["class_2"] == pytest.approx(1 / 3 - 0.25)


def test_macro_auc_leaves_out_class_0():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    probs = np.array([[0.9, 0.05, 0.05]] * 4 + [[0.2, 0.3, 0.5], [0.2, 0.7, 0.1],
                                                [0.3, 0.1, 0.6], [0.2, 0.6, 0.2]])
    result = metrics.probability_metrics(y, probs)
    assert result["pr_auc"]["class_0"] == 1.0  # easy, and no longer lifts the macro
    assert result["pr_auc"]["macro"] == pytest.approx(
        (result["pr_auc"]["class_1"] + result["pr_auc"]["class_2"]) / 2)
    assert result["pr_auc"]["macro"] < 1.0


def test_paired_interval_resamples_the_same_vehicles():
    rng = np.random.default_rng(3)
    shared = rng.exponential(100, 2000)  # what both models get wrong alike
    a, b = shared + rng.normal(0, 1, 2000), shared + rng.normal(0.5, 1, 2000)
    paired = metrics.paired_interval(a, b, n_boot=500, seed=0)
    assert paired["difference"] == pytest.approx((a - b).sum())
    low, high = paired["ci"]
    assert low < paired["difference"] < high < 0 and paired["share_first_lower"] == 1.0
    # Unpaired, the two totals' intervals overlap widely: pairing is what detects this.
    unpaired_a = metrics.paired_interval(a, np.zeros_like(a), n_boot=500, seed=0)["ci"]
    unpaired_b = metrics.paired_interval(b, np.zeros_like(b), n_boot=500, seed=1)["ci"]
    assert unpaired_a[1] > unpaired_b[0]
    assert metrics.paired_interval(a, a, n_boot=50)["ci"] == [0.0, 0.0]
    with pytest.raises(ValueError, match="same vehicles"):
        metrics.paired_interval(a, b[:-1])


def test_bootstrap_is_seeded_and_brackets_the_estimate():
    rng = np.random.default_rng(1)
    y = rng.choice(5, 2000, p=[0.9, 0.025, 0.025, 0.025, 0.025])
    pred = np.where(rng.random(2000) < 0.7, y, 0)
    first = metrics.bootstrap_intervals(y, pred, COST, n_boot=300, seed=5)
    assert first == metrics.bootstrap_intervals(y, pred, COST, n_boot=300, seed=5)
    assert first != metrics.bootstrap_intervals(y, pred, COST, n_boot=300, seed=6)
    low, high = first["cost_total_ci"]
    assert low < metrics.total_cost(y, pred, COST) < high
    low, high = first["macro_f1_ci"]
    assert low < metrics.decision_metrics(y, pred, COST)["macro_f1"] < high


def test_curves_are_small_and_monotone():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 500)
    probs = rng.dirichlet(np.ones(3), 500)
    pr, roc = metrics.curves_on_grid(y, probs, points=51)
    assert len(pr["recall"]) == 51 and set(pr) == {"recall", "class_0", "class_1", "class_2"}
    absent, _ = metrics.curves_on_grid(np.zeros(10, dtype=int), np.full((10, 3), 1 / 3), 11)
    assert set(absent) == {"recall", "class_0", "class_1", "class_2"}
    assert np.isnan(absent["class_1"]).all()
    assert (np.diff(roc["class_1"]) >= -1e-12).all()
    assert (np.diff(pr["class_2"]) <= 1e-12).all()


def test_cost_matrix_shape_is_checked():
    with pytest.raises(ParamsError, match="5x5"):
        metrics.check_cost_matrix([[0, 1], [1, 0]], 5)


def test_intervals_resample_vehicles_not_windows():
    rng = np.random.default_rng(0)
    y = rng.choice(3, 60, p=[0.8, 0.1, 0.1])
    pred = np.where(rng.random(60) < 0.7, y, 0)
    cost = np.ones((3, 3)) - np.eye(3)
    # every window its own vehicle: the same as not saying
    assert metrics.bootstrap_intervals(y, pred, cost, 200, 0, vehicles=np.arange(60) + 100) == \
        metrics.bootstrap_intervals(y, pred, cost, 200, 0)
    # four windows per vehicle, alike: resampled together, the interval is wider
    ys, preds, vehicles = np.repeat(y, 4), np.repeat(pred, 4), np.repeat(np.arange(60), 4)
    width = {}
    for name, groups in (("windows", None), ("vehicles", vehicles)):
        low, high = metrics.bootstrap_intervals(ys, preds, cost, 400, 0,
                                                vehicles=groups)["cost_total_ci"]
        paired = metrics.paired_interval(cost[ys, preds], np.zeros(len(ys)), 400, 0,
                                         vehicles=groups)
        assert paired["difference"] == cost[ys, preds].sum()
        width[name] = (high - low, paired["ci"][1] - paired["ci"][0])
    assert width["vehicles"][0] > 1.5 * width["windows"][0]
    assert width["vehicles"][1] > 1.5 * width["windows"][1]


@pytest.mark.parametrize("interval", ["bootstrap", "paired"])
def test_an_interval_s_memory_does_not_grow_with_its_resamples(interval):
    """Traced peak memory of an interval over 100,000 windows of 20,000 vehicles: 500
    resamples draw about the peak of 25, a few window columns (drawing the resamples at once
    would hold resamples x vehicles numbers: 80 MB at 500)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    windows = 100_000
    y = rng.choice(5, windows, p=[0.9, 0.025, 0.025, 0.025, 0.025])
    pred = np.where(rng.random(windows) < 0.7, y, 0)
    vehicles = rng.integers(0, 20_000, windows)
    ours, theirs = COST[y, pred], COST[y, y]
    peaks = {}
    for resamples in (25, 500):
        tracemalloc.start()
        if interval == "bootstrap":
            metrics.bootstrap_intervals(y, pred, COST, resamples, 0, vehicles=vehicles)
        else:
            metrics.paired_interval(ours, theirs, resamples, 0, vehicles=vehicles)
        peaks[resamples] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peaks[500] < 1.5 * peaks[25], peaks
    assert peaks[500] < 16 * windows * 8, peaks
