"""The built-in synthetic Component X looks like the real data and is reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from componentx import synthetic
from componentx.schema import SPLITS, readouts_file


def digest(folder) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.iterdir()):
        h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        synthetic.generate(tmp_path / name, 30, 20, 20, seed=seed, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_every_vehicle_has_readouts_even_in_the_shortest_study():
    rng = np.random.default_rng(0)
    n = 20_000
    vehicles = synthetic.sample_vehicles(rng, np.arange(n), synthetic.spec_probabilities(rng))
    vehicles.study_ticks[:] = round(synthetic.STUDY_MIN / synthetic.TICK)
    ticks = synthetic.readout_ticks(rng, vehicles)
    assert ((ticks >= 0).sum(axis=1) >= 1).all()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """Large enough for rates: 3,000 train vehicles, validation and test at the real size."""
    out = tmp_path_factory.mktemp("fleet")
    synthetic.generate(out, 3000, 5046, 5045, seed=11, progress=False)
    return out


@pytest.fixture(scope="module")
def train(fleet):
    return pd.read_csv(fleet / readouts_file("train"))


def test_readouts_look_like_the_reference(fleet, train):
    per_vehicle = train.groupby("vehicle_id").size()
    assert 40 <= per_vehicle.mean() <= 56  # reference ~47.7
    gaps = train.groupby("vehicle_id")["time_step"].diff().dropna().round(1)
    assert 3.8 <= gaps.median() <= 5.0  # reference median 4.4
    assert gaps.mode().iloc[0] == 6.0  # reference most frequent gap
    ticks = train["time_step"].to_numpy() / 0.2
    assert np.allclose(ticks, np.round(ticks))  # the 0.2 grid
    tte = pd.read_csv(fleet / "train_tte.csv")
    study = tte["length_of_study_time_step"]
    assert study.min() >= 73.4 and study.max() <= 510.0
    assert 220 <= study.mean() <= 260 and 70 <= study.std() <= 100
    assert 0.08 <= tte["in_study_repair"].mean() <= 0.115  # reference 9.65%


def test_values_are_cumulative_and_typed_like_the_real_ones(train):
    features = train.columns[2:]
    steps = train.groupby("vehicle_id")[list(features)].diff()
    assert int((steps < 0).sum().sum()) == 0
    integer_columns = [c for c in features if not c.startswith("459_")]
    values = train[integer_columns].to_numpy()
    assert np.all(np.isnan(values) | (values == np.floor(values)))
    family_459 = train[[c for c in features if c.startswith("459_")]].to_numpy()
    assert (family_459[~np.isnan(family_459)] % 1 != 0).mean() > 0.5
    last = train.groupby("vehicle_id").last()
    assert 1e6 < last["171_0"].median() < 5e7  # magnitudes as in the sample
    assert 1e7 < last["835_0"].median() < 1e9


def test_values_go_missing_by_family(train):
    trio = train[list(synthetic.MISSING_TOGETHER)].isna()
    assert (trio.all(axis=1) == trio.any(axis=1)).all()
    assert 0.2 < trio.iloc[:, 0].mean() < 0.6  # sample: 113 of 276 rows
    for family in ("167", "291", "459"):
        columns = [c for c in train.columns if c.startswith(family + "_")]
        missing = train[columns].isna()
        assert (missing.all(axis=1) == missing.any(axis=1)).all()
    assert 0.35 < train["167_0"].isna().mean() < 0.8  # sample: 194 of 276 rows
    for column in ("171_0", "666_0", "837_0", "309_0", "835_0"):
        assert not train[column].isna().any()


@pytest.mark.parametrize("split", ["validation", "test"])
def test_validation_and_test_have_the_reference_classes(fleet, split):
    labels = pd.read_csv(fleet / f"{split}_labels.csv")
    counts = tuple(np.bincount(labels["class_label"], minlength=5))
    assert counts == synthetic.REFERENCE_CLASS_COUNTS[split]
    readouts = pd.read_csv(fleet / readouts_file(split), usecols=["vehicle_id", "time_step"])
    per_vehicle = readouts.groupby("vehicle_id").size()
    assert 30 <= per_vehicle.mean() <= 46  # reference: 196,227 rows for 5,046 vehicles


def test_specifications_have_the_reference_cardinalities(fleet):
    specs = pd.read_csv(fleet / "train_specifications.csv")
    assert list(specs.columns) == ["vehicle_id"] + [f"Spec_{i}" for i in range(8)]
    for i, cardinality in enumerate(synthetic.SPEC_CARDINALITIES):
        values = specs[f"Spec_{i}"]
        assert values.str.fullmatch(r"Cat\d+").all()
        assert values.nunique() <= cardinality
        assert values.nunique() >= min(cardinality, 3)


def test_all_splits_share_the_header(fleet):
    headers = {split: list(pd.read_csv(fleet / readouts_file(split), nrows=1).columns)
               for split in SPLITS}
    assert headers["train"] == headers["validation"] == headers["test"]
