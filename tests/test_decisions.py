"""Calibration, prior correction and expected-cost decisions; test data never fits anything."""

from __future__ import annotations

import numpy as np
import pytest

from componentx.decisions import calibration, evaluation, metrics, priors, rules
from componentx.decisions.metrics import OFFICIAL_COST
from componentx.decisions.selection import vehicle_folds
from componentx.errors import ParamsError

COST = np.array(OFFICIAL_COST, dtype=float)


def calibrated_sample(rng, n=20_000, k=3):
    logits = rng.normal(0, 1.5, (n, k))
    probs = calibration.softmax(logits)
    y = np.array([rng.choice(k, p=p) for p in probs])
    return logits, y


def test_temperature_recovers_a_known_miscalibration():
    logits, y = calibrated_sample(np.random.default_rng(0))
    no_offset = np.zeros(3)
    assert calibration.fit_scaling(logits * 3.0, y, no_offset, False)[0] == pytest.approx(
        3.0, rel=0.08)
    assert calibration.fit_scaling(logits * 0.5, y, no_offset, False)[0] == pytest.approx(
        0.5, rel=0.08)
    temperature, bias = calibration.fit_scaling(logits * 2.0 + [0.0, 1.0, -0.5], y, no_offset,
                                              True)
    assert temperature == pytest.approx(2.0, rel=0.08)
    assert bias == pytest.approx([0.0, -0.5, 0.25], abs=0.08)  # -shift / T, class 0 fixed


DEPLOYMENT = np.array([4910, 16, 14, 30, 76]) / 5046  # the real validation class shares
TRAINING = np.full(5, 0.2)  # inverse class weights train under uniform priors


def fleet_sample(rng, n, priors=DEPLOYMENT):
    """Vehicles whose true posteriors are known: Gaussian class-conditionals, so the Bayes
    log-likelihoods are linear; the model's logits are the true ones under TRAINING priors."""
    means = np.array([[0, 0], [1.2, 0.4], [1.6, 1.2], [2.2, 2.0], [3.0, 3.2]])
    y = rng.choice(5, size=n, p=priors)
    x = means[y] + rng.normal(size=(n, 2))
    log_likelihood = x @ means.T - (means**2).sum(axis=1) / 2
    probs = calibration.softmax(log_likelihood + np.log(priors))
    return log_likelihood + np.log(TRAINING), probs, y


def scores(probs, y):
    log_loss = -np.log(probs[np.arange(len(y)), y]).mean()
    return log_loss, rules.expected_cost_decision(probs, COST), y


@pytest.mark.parametrize("overconfidence", [2.0, 3.0])
@pytest.mark.parametrize("method", ["temperature", "bias_temperature"])
def test_calibration_recovers_the_true_posteriors_under_a_prior_shift(overconfidence, method):
    """Fit on one sample, score another: within 2% of the true posteriors' log loss and cost.

    The prior shift must not be divided by the temperature: softmax((z + r) / T) fails this
    (log loss 1.85x, cost 1.18x the truth's at 3x overconfidence)."""
    rng = np.random.default_rng(7)
    fit_logits, _, fit_y = fleet_sample(rng, 100_000)
    logits, truth, y = fleet_sample(rng, 200_000)
    calibrator = calibration.fit_calibrator(fit_logits * overconfidence, fit_y, TRAINING,
                                           DEPLOYMENT, method)
    probs = calibrator.probabilities(logits * overconfidence)
    ours_loss, ours_pred, _ = scores(probs, y)
    true_loss, true_pred, _ = scores(truth, y)
    assert ours_loss == pytest.approx(true_loss, rel=0.02)
    assert metrics.total_cost(y, ours_pred, COST) == pytest.approx(
        metrics.total_cost(y, true_pred, COST), rel=0.02)


def test_biases_absorb_a_per_class_distortion_that_temperature_cannot():
    rng = np.random.default_rng(8)
    distortion = np.array([0.0, 2.5, -2.0, 1.5, -1.5])  # e.g. label smoothing's pull
    fit_logits, _, fit_y = fleet_sample(rng, 100_000)
    logits, truth, y = fleet_sample(rng, 100_000)
    true_loss = scores(truth, y)[0]
    loss = {}
    for method in ("temperature", "bias_temperature"):
        calibrator = calibration.fit_calibrator(2 * fit_logits + distortion, fit_y, TRAINING,
                                               DEPLOYMENT, method)
        loss[method] = scores(calibrator.probabilities(2 * logits + distortion), y)[0]
    assert loss["bias_temperature"] == pytest.approx(true_loss, rel=0.02)
    assert loss["temperature"] > 1.05 * true_loss


def test_crossfitted_validation_probabilities_come_from_folds_of_other_vehicles():
    rng = np.random.default_rng(9)
    logits, _, y = fleet_sample(rng, 3000, priors=np.full(5, 0.2))
    keys = np.repeat(np.arange(1000), 3)  # three windows per vehicle
    y = y[keys * 3]  # a vehicle's windows share its class
    probs = calibration.crossfit_probabilities(2 * logits, y, keys, TRAINING, None,
                                               "temperature", 3, 0)
    fold = vehicle_folds(np.zeros(3000, dtype=np.int64), keys, y, 3, 0)
    assert (fold.reshape(1000, 3) == fold.reshape(1000, 3)[:, :1]).all()  # whole vehicles
    assert set(np.bincount(fold)) <= {999, 1002}
    for f in range(3):
        held = fold == f
        own = calibration.fit_calibrator(2 * logits[~held], y[~held], TRAINING, None,
                                        "temperature")
        assert np.allclose(probs[held], own.probabilities(2 * logits[held]))


def test_focal_loss_and_label_smoothing_switch_to_fitted_biases(caplog):
    assert calibration.calibration_method("temperature", "cross_entropy", 0.0) == "temperature"
    assert calibration.calibration_method("none", "focal", 0.0) == "bias_temperature"
    assert calibration.calibration_method("temperature", "cross_entropy", 0.1) == \
        "bias_temperature"
    assert "prior shift alone cannot correct" in caplog.text


def test_prior_shift_by_hand():
    probs = np.array([[0.8, 0.2], [0.5, 0.5]])
    shifted = priors.shift_priors(probs, np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    # 0.8 * 1.8 = 1.44 and 0.2 * 0.2 = 0.04, normalised.
    assert np.allclose(shifted, [[1.44 / 1.48, 0.04 / 1.48], [0.9, 0.1]])
    back = priors.shift_priors(shifted, np.array([0.9, 0.1]), np.array([0.5, 0.5]))
    assert np.allclose(back, probs)


def test_expected_cost_decision_on_hand_made_probabilities():
    probs = np.array([
        [0.99, 0.0025, 0.0025, 0.0025, 0.0025],  # expected cost of 0 = 3.5 < 7 of 1: say 0
        [0.95, 0.0, 0.0, 0.0, 0.05],  # predicting 0 costs 25, 4 costs 9.5, 3 costs 18.55
        [0.5, 0.5, 0.0, 0.0, 0.0],  # predicting 1 costs 3.5, 0 costs 100
    ])
    assert rules.expected_cost_decision(probs, COST).tolist() == [0, 4, 1]
    assert rules.decide(probs, "argmax", COST).tolist() == [0, 0, 0]
    assert rules.decide(probs, "expected_cost", COST).tolist() == [0, 4, 1]


def test_failure_risk_is_the_probability_of_a_class_at_least_risk_class():
    probs = np.array([[0.5, 0.1, 0.2, 0.15, 0.05]])
    assert rules.failure_risk(probs, 1) == pytest.approx([0.5])
    assert rules.failure_risk(probs, 3) == pytest.approx([0.2])
    with pytest.raises(ParamsError, match="fleet.risk_class"):
        rules.failure_risk(probs, 5)
    windows = [6, 12, 24, 48]  # classes 4, 3, 2, 1
    assert [rules.risk_window(windows, r) for r in (1, 2, 4)] == [48, 24, 6]
    assert rules.risk_column(windows, 2) == "risk_failure_within_24"
    assert rules.risk_title(windows, 1) == "P(failure within 48)"
    assert rules.risk_column(None, 2) == "risk_class_2_or_higher"


def test_the_calibration_depends_on_the_validation_labels():
    rng = np.random.default_rng(3)
    val_logits, val_y = calibrated_sample(rng, n=2000, k=5)
    priors = np.full(5, 0.2)
    first = calibration.fit_calibrator(val_logits * 2, val_y, priors, None, "temperature")
    again = calibration.fit_calibrator(val_logits * 2, val_y, priors, None, "temperature")
    assert first.temperature == again.temperature
    other_val = calibration.fit_calibrator(val_logits * 2, rng.permutation(val_y), priors, None,
                                          "temperature")
    assert other_val.temperature != first.temperature


def test_given_priors_are_validated():
    logits, y = calibrated_sample(np.random.default_rng(4), n=100, k=5)
    with pytest.raises(ParamsError, match="evaluate.priors"):
        calibration.fit_calibrator(logits, y, np.full(5, 0.2), [0.5, 0.5], "temperature")


def test_evaluation_fits_on_validation_only():
    rng = np.random.default_rng(5)
    logits = {s: rng.normal(0, 2, (400, 5)) for s in ("validation", "test")}
    labels = {s: rng.choice(5, 400, p=[0.9, 0.025, 0.025, 0.025, 0.025])
              for s in ("validation", "test")}
    settings = {"priors": "validation", "calibration": "temperature", "decision": "expected_cost",
                "bootstrap": 50, "seed": 0, "folds": 5}
    trained = np.full(5, 0.2)
    vehicles = {s: np.arange(400) for s in logits}
    report = evaluation.evaluate_logits(logits, labels, vehicles, trained, COST, settings).report
    scrambled = {"validation": logits["validation"], "test": rng.normal(0, 5, (400, 5))}
    other_labels = {"validation": labels["validation"], "test": rng.permutation(labels["test"])}
    again = evaluation.evaluate_logits(scrambled, other_labels, vehicles, trained, COST,
                                       settings).report
    assert again["calibration"] == report["calibration"]
    assert again["validation"] == report["validation"]
    assert again["test"] != report["test"]
