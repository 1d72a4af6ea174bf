"""Calibration, prior correction and expected-cost decisions; test data never fits anything."""

from __future__ import annotations

import numpy as np
import pytest

from componentx import decisions, evaluation
from componentx.metrics import OFFICIAL_COST

COST = np.array(OFFICIAL_COST, dtype=float)


def calibrated_sample(rng, n=20_000, k=3):
    logits = rng.normal(0, 1.5, (n, k))
    probs = decisions.softmax(logits)
    y = np.array([rng.choice(k, p=p) for p in probs])
    return logits, y


def test_temperature_recovers_a_known_miscalibration():
    logits, y = calibrated_sample(np.random.default_rng(0))
    assert decisions.fit_temperature(logits * 3.0, y) == pytest.approx(3.0, rel=0.08)
    assert decisions.fit_temperature(logits * 0.5, y) == pytest.approx(0.5, rel=0.08)


def test_prior_shift_by_hand():
    probs = np.array([[0.8, 0.2], [0.5, 0.5]])
    shifted = decisions.shift_priors(probs, np.array([0.5, 0.5]), np.array([0.9, 0.1]))
    # 0.8 * 1.8 = 1.44 and 0.2 * 0.2 = 0.04, normalised.
    assert np.allclose(shifted, [[1.44 / 1.48, 0.04 / 1.48], [0.9, 0.1]])
    back = decisions.shift_priors(shifted, np.array([0.9, 0.1]), np.array([0.5, 0.5]))
    assert np.allclose(back, probs)


def test_expected_cost_decision_on_hand_made_probabilities():
    probs = np.array([
        [0.99, 0.0025, 0.0025, 0.0025, 0.0025],  # expected cost of 0 = 3.5 < 7 of 1: say 0
        [0.95, 0.0, 0.0, 0.0, 0.05],  # predicting 0 costs 25, 4 costs 9.5, 3 costs 18.55
        [0.5, 0.5, 0.0, 0.0, 0.0],  # predicting 1 costs 3.5, 0 costs 100
    ])
    assert decisions.expected_cost_decision(probs, COST).tolist() == [0, 4, 1]
    assert decisions.decide(probs, "argmax", COST).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="decision rule"):
        decisions.decide(probs, "vote", COST)


def test_the_test_split_never_fits_the_calibration():
    rng = np.random.default_rng(3)
    val_logits, val_y = calibrated_sample(rng, n=2000, k=5)
    priors = np.full(5, 0.2)
    first = evaluation.fit_calibrator(val_logits * 2, val_y, priors, None, "temperature")
    again = evaluation.fit_calibrator(val_logits * 2, val_y, priors, None, "temperature")
    assert first.temperature == again.temperature
    other_val = evaluation.fit_calibrator(val_logits * 2, rng.permutation(val_y), priors, None,
                                          "temperature")
    assert other_val.temperature != first.temperature
    assert "test" not in evaluation.fit_calibrator.__code__.co_varnames


def test_given_priors_are_validated():
    logits, y = calibrated_sample(np.random.default_rng(4), n=100, k=5)
    with pytest.raises(ValueError, match="evaluate.priors"):
        evaluation.fit_calibrator(logits, y, np.full(5, 0.2), [0.5, 0.5], "temperature")
    with pytest.raises(ValueError, match="evaluate.calibration"):
        evaluation.fit_calibrator(logits, y, np.full(5, 0.2), None, "isotonic")


def test_evaluation_fits_on_validation_only():
    rng = np.random.default_rng(5)
    logits = {s: rng.normal(0, 2, (400, 5)) for s in ("validation", "test")}
    labels = {s: rng.choice(5, 400, p=[0.9, 0.025, 0.025, 0.025, 0.025])
              for s in ("validation", "test")}
    settings = {"priors": "validation", "calibration": "temperature", "decision": "expected_cost",
                "bootstrap": 50, "seed": 0}
    priors = np.full(5, 0.2)
    report, _ = evaluation.evaluate_logits(logits, labels, priors, COST, settings)
    scrambled = {"validation": logits["validation"], "test": rng.normal(0, 5, (400, 5))}
    other_labels = {"validation": labels["validation"], "test": rng.permutation(labels["test"])}
    again, _ = evaluation.evaluate_logits(scrambled, other_labels, priors, COST, settings)
    assert again["temperature"] == report["temperature"]
    assert again["validation"] == report["validation"]
    assert again["test"] != report["test"]
    table = evaluation.comparison_markdown({"A": report, "B": again})
    assert table.count("| A |") == 2 and "| B | test |" in table
