"""Alarm logic on hand-made trajectories: hysteresis, spikes, lead times, false alarms."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from componentx.decisions import alarms

TIMES = np.arange(0.0, 100.0, 10.0)  # ten readouts per vehicle
RISK = {
    # repaired at 100: a lone spike at 20, then on at 70 (2 in a row), held through a dip at 80
    "A": [0.1, 0.1, 0.9, 0.1, 0.1, 0.1, 0.7, 0.75, 0.55, 0.8],
    # censored: two alarms, both false
    "B": [0.8, 0.8, 0.1, 0.1, 0.9, 0.9, 0.9, 0.4, 0.1, 0.1],
    # repaired at 100, but alarmed only early: a false alarm and a missed repair
    "C": [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
}


def fleet():
    vehicles = np.repeat([1, 2, 3], len(TIMES))
    return alarms.Fleet(vehicles, np.tile(TIMES, 3), np.array([True, False, True]),
                        np.array([100.0, 100.0, 100.0]))


def risk():
    return np.concatenate([RISK[v] for v in "ABC"])


def test_hysteresis_holds_through_a_dip_and_a_single_spike_is_suppressed():
    state = alarms.alarm_state(fleet(), risk(), tau_on=0.7, tau_off=0.5, min_consecutive=2)
    a, b, c = state[:10], state[10:20], state[20:]
    assert a.tolist() == [False] * 7 + [True] * 3  # spike at 20 ignored; dip at 80 held
    assert b.tolist() == [False, True, False, False, False, True, True, False, False, False]
    assert c.tolist() == [False, True, True] + [False] * 7
    single = alarms.alarm_state(fleet(), risk(), tau_on=0.7, tau_off=0.5, min_consecutive=1)
    assert single[2]  # with one readout enough, the spike alarms
    no_hysteresis = alarms.alarm_state(fleet(), risk(), 0.7, 0.7, 2)
    assert not no_hysteresis[8]  # the dip at 80 ends it without hysteresis


def test_a_run_of_high_readouts_does_not_continue_into_the_next_vehicle():
    two = alarms.Fleet(np.array([1, 1, 2, 2]), np.array([0.0, 1, 0, 1]), np.array([False] * 2),
                       np.array([1.0, 1.0]))
    state = alarms.alarm_state(two, np.array([0.1, 0.9, 0.9, 0.1]), 0.5, 0.5, 2)
    assert not state.any()


def test_lead_times_false_alarms_and_time_overlap_are_exact():
    state = alarms.alarm_state(fleet(), risk(), tau_on=0.7, tau_off=0.5, min_consecutive=2)
    metrics = alarms.summarise(fleet(), state, horizon=48.0).metrics()
    assert metrics["repairs"] == 2 and metrics["detection_rate"] == 0.5  # A yes, C no
    assert metrics["lead_time_median"] == 30.0  # repair at 100, onset at 70
    assert metrics["false_alarms"] == 3  # B twice, C once (ended at 30, before 52)
    observed = 100 + 90 + 100  # a repaired vehicle is observed until its repair
    assert metrics["false_alarms_per_1000"] == pytest.approx(3000 / observed)
    assert metrics["flicker_onsets_per_1000_alarm_time"] == pytest.approx(4 * 1000 / 80)
    assert metrics["time_precision"] == pytest.approx(30 / 80)  # on-time inside danger windows
    assert metrics["time_recall"] == pytest.approx(30 / 96)  # danger: 48 per repaired vehicle


def test_an_alarm_still_on_at_the_repair_counts_from_its_onset():
    early = np.concatenate([[0.1, 0.9, 0.9] + [0.6] * 7, RISK["B"], RISK["C"]])
    state = alarms.alarm_state(fleet(), early, 0.7, 0.5, 2)
    metrics = alarms.summarise(fleet(), state, horizon=48.0).metrics()
    assert metrics["lead_time_median"] == 80.0  # on since 20, still on before the repair
    assert metrics["false_alarms"] == 3


def test_sensitivity_grows_with_the_allowed_false_alarm_rate():
    rng = np.random.default_rng(0)
    n_vehicles, per = 60, 30
    times = np.tile(np.arange(per, dtype=float) * 5, n_vehicles)
    vehicles = np.repeat(np.arange(n_vehicles), per)
    repaired = rng.random(n_vehicles) < 0.3
    end = np.full(n_vehicles, per * 5.0)
    closeness = np.clip(1 - (end[vehicles] - times) / 60, 0, 1) * repaired[vehicles]
    risk = np.clip(0.25 * closeness + rng.normal(0.3, 0.15, len(times)), 0, 1)
    fleet = alarms.Fleet(vehicles, times, repaired, end)
    thresholds = np.linspace(0.05, 0.95, 40)
    counts = alarms.sweep_counts(fleet, risk, thresholds, 0.1, 2, 48.0)
    curve = alarms.sweep_curve(thresholds, counts, int(repaired.sum()),
                               float(fleet.duration.sum()))
    sensitivity = alarms.sensitivity_at(curve, (0.5, 1.0, 2.5, 5.0, 10.0, 50.0))
    values = list(sensitivity.values())
    assert values == sorted(values) and values[-1] > values[0]
    chosen = alarms.threshold_for(curve, 10.0)
    at_chosen = next(p for p in curve if p["tau_on"] == chosen)
    assert at_chosen["false_alarms_per_1000"] <= 10.0
    assert at_chosen["detection_rate"] == sensitivity["10"]


def random_fleet(seed: int = 0, n_vehicles: int = 40) -> tuple[alarms.Fleet, np.ndarray]:
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 25, n_vehicles)
    vehicles = np.repeat(np.arange(n_vehicles) * 3 + 5, per)
    times = np.concatenate([np.cumsum(rng.uniform(0.1, 9.7, n)) for n in per])
    repaired = rng.random(n_vehicles) < 0.4
    end = np.array([t.max() + rng.uniform(0.5, 30) for t in np.split(times, np.cumsum(per)[:-1])])
    return alarms.Fleet(vehicles, times, repaired, end), rng.random(len(times)) ** 3


def test_vehicles_taken_apart_add_up_to_the_whole_fleet_exactly():
    """What the fleet view's buckets return (sweep counts, alarm summaries, risk codes) adds
    up over any split of the vehicles to the whole fleet's, bit for bit."""
    whole, risk = random_fleet()
    cuts = [0, 7, 20, 21, 40]  # vehicles 0-6, 7-19, 20, 21-39
    rows = np.r_[whole.start, len(risk)]
    parts = [(alarms.Fleet(whole.vehicle[rows[a]:rows[b]], whole.time[rows[a]:rows[b]],
                           whole.repaired[a:b], whole.end[a:b]), risk[rows[a]:rows[b]])
             for a, b in itertools.pairwise(cuts)]
    thresholds = np.linspace(0.05, 0.9, 30)
    np.testing.assert_array_equal(
        alarms.sweep_counts(whole, risk, thresholds, 0.2, 2, 20.0),
        np.sum([alarms.sweep_counts(f, r, thresholds, 0.2, 2, 20.0) for f, r in parts], axis=0))
    state = alarms.alarm_state(whole, risk, 0.4, 0.3, 2)
    summary = alarms.summarise(whole, state, 20.0)
    merged = alarms.AlarmSummary.merge([alarms.summarise(f, alarms.alarm_state(
        f, r, 0.4, 0.3, 2), 20.0) for f, r in parts])
    assert merged.metrics() == summary.metrics() and summary.detected > 0
    assert summary.false_alarms > 0 and float(summary.alarm_time) > 0
    assert float(summary.observed_time) == pytest.approx(whole.duration.sum(), rel=1e-12)
    codes = np.zeros(alarms.RISK_SCALE + 1, dtype=np.int64)
    for _, r in parts:
        np.add.at(codes, *alarms.risk_codes(r))
    # numpy's quantiles of the rounded risks, up to the rounding of an exact half code
    expected = np.unique(np.round(np.quantile(np.round(risk, 6), np.linspace(0.5, 0.9995, 150)),
                                  6))
    found = alarms.risk_thresholds(codes)
    assert len(found) == len(expected) > 100
    np.testing.assert_allclose(found, expected, rtol=0, atol=1.01e-6)


def test_an_exact_sum_does_not_depend_on_the_order_or_the_parts():
    rng = np.random.default_rng(1)
    values = rng.normal(size=5000) * 10.0 ** rng.integers(-8, 8, 5000)
    total = alarms.exact_sum(values)
    assert alarms.exact_sum(values[::-1]) == total
    assert alarms.exact_sum(values[:1234]) + alarms.exact_sum(values[1234:]) == total

    assert float(total) == math.fsum(values)
