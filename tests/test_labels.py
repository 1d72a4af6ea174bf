"""Class labels from time to event: boundaries, censoring and reference policies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chisquare

from componentx.data import labels
from componentx.errors import ParamsError

WINDOWS = [6, 12, 24, 48]


@pytest.mark.parametrize(("ttf", "expected"), [
    (0.2, 4), (6.0, 4), (6.2, 3), (12.0, 3), (12.2, 2), (24.0, 2), (24.2, 1), (48.0, 1),
    (48.2, 0), (300.0, 0),
])
def test_class_windows_at_their_exact_boundaries(ttf, expected):
    assert labels.class_from_ttf(np.array([ttf]), WINDOWS)[0] == expected


def test_boundaries_survive_floating_point_on_the_grid():
    study, times = 510.0, np.array([504.0, 498.0, 486.0, 462.0])
    ttf = study - times  # exactly 6, 12, 24, 48 only up to rounding
    assert labels.class_from_ttf(ttf, WINDOWS).tolist() == [4, 3, 2, 1]
    ttf = np.array([0.1 + 0.2 + 5.7, 47.99999999999])
    assert labels.class_from_ttf(ttf, WINDOWS).tolist() == [4, 1]


def test_windows_must_match_the_class_count():
    with pytest.raises(ParamsError, match="needs 4"):
        labels.check_windows([6, 12, 24], 5)
    with pytest.raises(ParamsError, match="increasing"):
        labels.check_windows([6, 24, 12, 48], 5)


def fleet():
    """Vehicle 1 repaired at 100 (readouts every 2 from 2), vehicle 2 censored at 120."""
    t1, t2 = np.arange(2.0, 100.0, 2.0), np.arange(1.0, 121.0, 5.0)
    ids = np.r_[np.full(len(t1), 1), np.full(len(t2), 2)]
    tte = pd.DataFrame({"vehicle_id": [1, 2], "length_of_study_time_step": [100.0, 120.0],
                        "in_study_repair": [1, 0]})
    return ids, np.r_[t1, t2], tte


def test_one_reference_per_class_for_repaired_vehicles():
    ids, times, tte = fleet()
    result = labels.labels_from_tte(ids, times, tte, WINDOWS, "one_per_class", seed=1)
    repaired = result[result["vehicle_id"] == 1]
    assert sorted(repaired["class_label"]) == [0, 1, 2, 3, 4]
    expected = labels.class_from_ttf(100.0 - repaired["ref_time"].to_numpy(), WINDOWS)
    assert (repaired["class_label"].to_numpy() == expected).all()
    assert np.allclose(repaired["ttf"], 100.0 - repaired["ref_time"])
    again = labels.labels_from_tte(ids, times, tte, WINDOWS, "one_per_class", seed=1)
    pd.testing.assert_frame_equal(result, again)
    other = labels.labels_from_tte(ids, times, tte, WINDOWS, "one_per_class", seed=2)
    assert not other["ref_time"].equals(result["ref_time"])


def test_every_readout_of_repaired_vehicles():
    ids, times, tte = fleet()
    result = labels.labels_from_tte(ids, times, tte, WINDOWS, "all")
    assert (result["vehicle_id"] == 1).sum() == (ids == 1).sum()


def test_censored_vehicles_only_where_class_0_is_known():
    ids, times, tte = fleet()
    result = labels.labels_from_tte(ids, times, tte, WINDOWS, censored_refs=3, seed=0)
    censored = result[result["vehicle_id"] == 2]
    assert len(censored) == 3
    assert (censored["class_label"] == 0).all()
    assert (120.0 - censored["ref_time"] > 48).all()
    many = labels.labels_from_tte(ids, times, tte, WINDOWS, censored_refs=1000)
    known = (ids == 2) & (120.0 - times > 48)
    assert (many["vehicle_id"] == 2).sum() == known.sum()


def test_journal_policy_references_censored_vehicles_at_end_of_study():
    ids, times, tte = fleet()
    result = labels.labels_from_tte(ids, times, tte, WINDOWS, censored="end_of_study")
    censored = result[result["vehicle_id"] == 2]
    assert censored["ref_time"].tolist() == [120.0]
    assert censored["class_label"].tolist() == [0]


def test_given_labels_sit_on_the_last_readout():
    ids, times, _ = fleet()
    given = pd.DataFrame({"vehicle_id": [2, 1], "class_label": [0, 3]})
    result = labels.labels_at_last_readout(ids, times, given)
    assert result["vehicle_id"].tolist() == [1, 2]
    assert result["ref_time"].tolist() == [98.0, 116.0]
    assert result["class_label"].tolist() == [3, 0]
    empty = labels.labels_at_last_readout(ids[:0], times[:0], given[:0])  # an empty bucket
    assert len(empty) == 0 and list(empty.columns) == list(result.columns)


def test_test_like_references_are_uniform_over_every_readout():
    ids, times, tte = fleet()
    result = labels.labels_from_tte(ids, times, tte, WINDOWS, "test_like", "test_like",
                                    seed=3, test_like_refs=6)
    assert result.groupby("vehicle_id").size().tolist() == [6, 6]
    repaired, censored = result[result["vehicle_id"] == 1], result[result["vehicle_id"] == 2]
    expected = labels.class_from_ttf(100.0 - repaired["ref_time"].to_numpy(), WINDOWS)
    assert (repaired["class_label"].to_numpy() == expected).all()
    # A censored vehicle is class 0 wherever it is cut, its last 48 units included.
    assert (censored["class_label"] == 0).all()
    assert set(censored["ref_time"]) <= set(times[ids == 2])
    # Over many seeds every readout is drawn about equally often.
    drawn = pd.concat([labels.labels_from_tte(ids, times, tte, WINDOWS, "test_like",
                                              "test_like", seed=s, test_like_refs=1)
                       for s in range(400)])
    counts = drawn[drawn["vehicle_id"] == 2]["ref_time"].value_counts()
    assert len(counts) == (ids == 2).sum()
    assert chisquare(counts.to_numpy()).pvalue > 0.001  # no readout favoured


def test_the_fleet_holdout_is_stratified_seeded_and_every_readout_is_a_reference():
    tte = pd.DataFrame({"vehicle_id": np.arange(100),
                        "length_of_study_time_step": 200.0,
                        "in_study_repair": (np.arange(100) % 10 == 0).astype(int)})
    held = labels.holdout_vehicles(tte, 0.2, seed=1)
    assert len(held) == 20 and (np.isin(held, np.arange(0, 100, 10))).sum() == 2
    assert np.array_equal(held, labels.holdout_vehicles(tte, 0.2, seed=1))
    assert not np.array_equal(held, labels.holdout_vehicles(tte, 0.2, seed=2))
    ids, times = np.repeat([0, 1], 3), np.tile([100.0, 160.0, 190.0], 2)
    references = labels.fleet_references(ids, times, tte, WINDOWS)
    assert references["class_label"].tolist() == [0, 1, 3, 0, 0, 0]  # vehicle 0 was repaired
    assert references["ttf"].isna().tolist() == [False] * 3 + [True] * 3


def test_draws_are_keyed_by_vehicle_not_by_what_is_labelled_with_it():
    """Labels of vehicles labelled in two groups (two buckets) are those of all at once, the
    censored ones at the end of study too (each once, by its own group)."""
    ids, times, tte = fleet()
    for refs, censored in (("one_per_class", "known_class0"), ("test_like", "known_class0"),
                           ("one_per_class", "end_of_study")):
        together = labels.labels_from_tte(ids, times, tte, WINDOWS, refs, censored, seed=4)
        apart = pd.concat([labels.labels_from_tte(ids[ids == v], times[ids == v], tte, WINDOWS,
                                                  refs, censored, seed=4)
                           for v in (1, 2)], ignore_index=True)
        pd.testing.assert_frame_equal(together, apart)
