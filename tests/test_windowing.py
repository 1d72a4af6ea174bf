"""Windows as an index into the sorted readouts, checked against a plain loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from componentx.data import windowing


def random_readouts(rng, vehicles=30):
    counts = rng.integers(1, 40, vehicles)
    ids = np.repeat(rng.choice(10_000, vehicles, replace=False), counts)
    times = np.concatenate([np.sort(rng.choice(2000, c, replace=False)) * 0.2 for c in counts])
    order = np.lexsort((times, ids))
    return ids[order], times[order]


def loop_windows(ids, times, label_ids, refs, size):
    """The obvious per-label loop, as the reference."""
    ends, lengths = [], []
    for vehicle, ref in zip(label_ids, refs, strict=True):
        rows = np.flatnonzero((ids == vehicle) & (times <= ref))
        ends.append(rows[-1] + 1 if len(rows) else np.flatnonzero(ids == vehicle)[0])
        lengths.append(min(len(rows), size))
    return np.array(ends), np.array(lengths)


@pytest.mark.parametrize("size", [1, 5, 64])
def test_index_matches_a_loop_for_short_and_long_histories(size):
    rng = np.random.default_rng(size)
    ids, times = random_readouts(rng)
    pick = rng.integers(0, len(ids), 200)
    label_ids = ids[pick]
    refs = times[pick] + rng.choice([0.0, 0.1, 3.0], 200)  # on and between readouts
    end, length = windowing.window_index(ids, times, label_ids, refs, size)
    expected_end, expected_length = loop_windows(ids, times, label_ids, refs, size)
    assert (end == expected_end).all()
    assert (length == expected_length).all()


def test_references_before_and_after_the_history():
    ids = np.array([1, 1, 1, 2, 2])
    times = np.array([1.0, 2.0, 3.0, 0.4, 9.0])
    end, length = windowing.window_index(ids, times, np.array([1, 1, 2, 2]),
                                         np.array([0.2, 500.0, 0.2, 9.0]), 2)
    assert end.tolist() == [0, 3, 3, 5]
    assert length.tolist() == [0, 2, 0, 2]


def test_labels_without_readouts_before_them_are_dropped():
    ids, times = np.array([1, 1]), np.array([5.0, 6.0])
    labels = pd.DataFrame({"vehicle_id": [1, 1], "ref_time": [1.0, 6.0], "class_label": [0, 2]})
    meta = windowing.build_windows(ids, times, labels, 4)
    assert meta[["ref_time", "end_row", "length"]].values.tolist() == [[6.0, 2, 2]]


def test_unknown_vehicle_is_an_error():
    with pytest.raises(ValueError, match="vehicle 7"):
        windowing.window_index(np.array([1, 2]), np.array([0.0, 0.0]), np.array([7]),
                               np.array([1.0]), 3)


def test_gather_pads_on_the_left():
    rows = windowing.gather_rows(np.array([3, 10]), np.array([2, 4]), size=4, pad_row=99)
    assert rows.tolist() == [[99, 99, 1, 2], [6, 7, 8, 9]]


def test_a_window_always_keeps_the_readout_at_its_reference_time():
    """Times where origin + span - 1 rounds below the last time (0.4 + 1.0 - 1.0 < 0.4)."""
    for ids, times in ((np.array([62]), np.array([0.4])),
                       (np.array([1, 1, 2]), np.array([0.1, 0.7, 0.4]))):
        end, length = windowing.window_index(ids, times, ids, times, size=8)
        assert (length >= 1).all()
        assert (end == np.arange(1, len(ids) + 1)).all()
