"""Transforms and streaming statistics, against numpy on the whole table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from componentx.compute import bucket_of
from componentx.data import features, specs
from componentx.errors import DatasetError
from componentx.params import TRANSFORMS

NAMES = ["c1", "h_0", "h_1"]
COUNTERS = ["c1"]


def table(rng, rows=200):
    ids = np.repeat(np.arange(12), rng.multinomial(rows - 12, np.ones(12) / 12) + 1)
    times = np.concatenate([np.cumsum(rng.integers(1, 30, (ids == v).sum())) * 0.2
                            for v in np.unique(ids)])
    values = np.cumsum(rng.gamma(2.0, 1000.0, (rows, 3)), axis=0)
    values[rng.random((rows, 3)) < 0.1] = np.nan
    return values, times, ids


def whole_table_reference(values, times, ids, transform):
    frame = pd.DataFrame(values, columns=NAMES)
    parts = []
    if transform in ("cumulative", "both"):
        cumulative = frame.copy()
        cumulative["c1"] = np.sign(cumulative["c1"]) * np.log1p(cumulative["c1"].abs())
        parts.append(cumulative.to_numpy())
    if transform in ("increments", "both"):
        rates = frame.groupby(ids).diff().to_numpy() / pd.Series(times).groupby(
            ids).diff().to_numpy()[:, None]
        rates[:, 0] = np.sign(rates[:, 0]) * np.log1p(np.abs(rates[:, 0]))
        parts.append(rates)
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize("block_rows", [7, 64, 10_000])
def test_stats_and_normalisation_match_numpy(transform, block_rows):
    values, times, ids = table(np.random.default_rng(0))
    stats = features.compute_stats(values, times, ids, NAMES, COUNTERS, transform)
    reference = whole_table_reference(values, times, ids, transform)
    assert stats.names == features.transformed_names(NAMES, transform)
    assert np.allclose(stats.mean, np.nanmean(reference, axis=0))
    assert np.allclose(stats.std, np.nanstd(reference, axis=0))
    assert stats.count == (~np.isnan(reference)).sum(axis=0).tolist()
    normalised = features.normalise(values, times, ids, stats, block_rows)
    expected = np.nan_to_num((reference - np.nanmean(reference, 0)) / np.nanstd(reference, 0))
    assert normalised.dtype == np.float32
    assert np.allclose(normalised, expected, atol=1e-5)


@pytest.mark.parametrize("buckets", [2, 3, 7])
def test_stats_are_the_same_whatever_the_bucketing(buckets):
    values, times, ids = table(np.random.default_rng(1), rows=600)
    whole = features.compute_stats(values, times, ids, NAMES, COUNTERS, "both")
    which = bucket_of(ids, buckets)
    parts = [features.stat_partials(values[which == b], times[which == b], ids[which == b],
                                    np.isin(NAMES, COUNTERS), "both") for b in range(buckets)]
    merged = features.stats_from_partials(parts, NAMES, COUNTERS, "both")
    assert (merged.mean, merged.std, merged.count) == (whole.mean, whole.std, whole.count)


def test_first_readout_of_a_vehicle_has_no_increment():
    values = np.array([[1.0], [3.0], [10.0], [20.0]])
    out = features.transform_features(values, np.array([0.0, 2.0, 0.0, 5.0]),
                                      np.array([1, 1, 2, 2]), np.array([False]), "increments")
    assert np.isnan(out[0, 0]) and np.isnan(out[2, 0])
    assert out[1, 0] == 1.0 and out[3, 0] == 2.0


def test_constant_feature_and_unknown_counters():
    values, times, ids = table(np.random.default_rng(1))
    values[:, 1] = 5.0
    stats = features.compute_stats(values, times, ids, NAMES, COUNTERS, "cumulative")
    assert stats.std[1] == 1.0
    with_unknown = features.compute_stats(values, times, ids, NAMES, ["nope"], "cumulative")
    assert with_unknown.counters == [] and with_unknown.mean != stats.mean  # nothing logged


def test_specifications_are_coded_on_train_with_unknowns_at_zero():
    train = pd.DataFrame({"Spec_0": ["Cat1", "Cat0", "Cat1"], "Spec_1": ["a", None, "b"]})
    split = pd.DataFrame({"Spec_0": ["Cat0", "Cat9"], "Spec_1": [None, "b"]})
    vocabulary = specs.vocabularies(train, ["Spec_0", "Spec_1"])
    assert vocabulary == {"Spec_0": ["Cat0", "Cat1"], "Spec_1": ["a", "b"]}
    codes, unknown = specs.encode(vocabulary, split)
    assert codes.tolist() == [[1, 0], [0, 2]]
    assert unknown == {"Spec_0": 1, "Spec_1": 0}  # a missing value is not an unknown category
    assert specs.cardinalities(vocabulary) == [3, 3]


def test_an_ingested_folder_s_vocabularies_are_those_of_its_train_specifications(tmp_path):
    """Text, integers and floats with nulls and NaN: the file ingest writes (from the distinct
    values) holds what coding every value gives, and a bucket's task reads that file alone."""
    import pyarrow as pa

    train = pa.table({"vehicle_id": [1, 2, 3, 4], "Spec_0": ["Cat1", "Cat0", None, "Cat1"],
                      "Spec_1": [3, None, 12, 3], "Spec_2": [0.5, float("nan"), None, 2.0]})
    specs.write_vocabularies(train, tmp_path)
    columns = ["Spec_0", "Spec_1", "Spec_2"]
    expected = specs.vocabularies(train.to_pydict(), columns)
    assert expected == {"Spec_0": ["Cat0", "Cat1"], "Spec_1": ["12", "3"],
                        "Spec_2": ["0.5", "2.0"]}
    assert specs.train_vocabularies(tmp_path, columns) == expected
    assert specs.train_vocabularies(tmp_path, ["Spec_2"]) == {"Spec_2": ["0.5", "2.0"]}
    with pytest.raises(DatasetError, match="vocabularies.json: missing.*dvc repro ingest"):
        specs.train_vocabularies(tmp_path / "ingested before", columns)


def test_history_channels_see_the_whole_history_of_each_vehicle():
    from componentx.data.features import HISTORY_SCALE, history_channels

    times = np.array([0.0, 2.0, 5.0, 1.0, 4.0])
    ids = np.array([1, 1, 1, 2, 2])
    channels = history_channels(times, ids)
    assert np.allclose(channels[:, 0], np.array([0, 2, 5, 0, 3]) / HISTORY_SCALE)
    assert np.allclose(channels[:, 1], np.log1p([1, 2, 3, 1, 2]))


def test_counters_the_data_do_not_have_are_ignored(caplog):
    values = np.arange(12, dtype=float).reshape(6, 2)
    times, ids = np.arange(6, dtype=float), np.zeros(6, dtype=int)
    stats = features.compute_stats(values, times, ids, ["a", "b"], ["171_0", "a"], "cumulative")
    assert stats.counters == ["a"] and "171_0" in caplog.text
