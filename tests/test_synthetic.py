"""The built-in synthetic Component X looks like the real data and is reproducible."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from componentx.data import synthetic
from componentx.data.labels import class_from_ttf
from componentx.data.layout import SPLITS, readouts_file
from componentx.errors import ParamsError

# The real validation and test label counts (classes 0..4), from the dataset's reference.
REAL_CLASS_COUNTS = {"validation": (4910, 16, 14, 30, 76), "test": (4903, 26, 15, 41, 60)}


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


def test_values_are_cumulative_with_rare_counter_resets(train):
    features = train.columns[2:]
    steps = train.groupby("vehicle_id")[list(features)].diff()
    histograms = [c for c in features if c not in synthetic.COUNTERS]
    assert int((steps[histograms] < 0).sum().sum()) == 0
    decreasing = steps[list(synthetic.COUNTERS)] < 0
    reset_vehicles = train.loc[decreasing.any(axis=1), "vehicle_id"].nunique()
    assert 0 < reset_vehicles <= 3 * synthetic.RESET_VEHICLE_SHARE * train["vehicle_id"].nunique()
    # Each such vehicle restarts once: at most one decreasing step per counter.
    per_vehicle = decreasing.groupby(train["vehicle_id"]).sum()
    assert per_vehicle.to_numpy().max() == 1


def test_values_are_typed_like_the_real_ones(train):
    features = train.columns[2:]
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
def test_validation_and_test_have_the_real_class_counts(fleet, split):
    labels = pd.read_csv(fleet / f"{split}_labels.csv")
    assert tuple(np.bincount(labels["class_label"], minlength=5)) == REAL_CLASS_COUNTS[split]
    readouts = pd.read_csv(fleet / readouts_file(split), usecols=["vehicle_id", "time_step"])
    per_vehicle = readouts.groupby("vehicle_id").size()
    assert 20 <= per_vehicle.mean() <= 30  # a uniform cut keeps about half of ~50 readouts


def evaluation_vehicles(seed, index, split, n, spec_probs, windows):
    """The validation or test vehicles the generator chooses, in their order."""
    chosen = synthetic.evaluation_choice(seed, index, split, n, spec_probs, windows)
    return synthetic.concat([part[0] for part in synthetic.chosen_vehicles(
        seed, index, chosen, spec_probs, windows, synthetic.SIGNAL_STRENGTH)])


def evaluation_truth(seed, n_train, sizes, windows=synthetic.CLASS_WINDOWS):
    """The hidden truth (study length, repair) of the validation and test vehicles."""
    spec_probs = synthetic.spec_probabilities(np.random.default_rng([seed, 0]))
    truth, first = {}, n_train
    for index, (split, n) in enumerate(sizes.items(), start=2):
        vehicles = evaluation_vehicles(seed, index, split, n, spec_probs, windows)
        truth[split] = pd.DataFrame({"vehicle_id": np.arange(n) + first,
                                     "study": np.round(vehicles.study_ticks * synthetic.TICK, 1),
                                     "event": vehicles.event})
        first += n
    return truth


def check_labels_match_the_last_readout(folder, truth, windows):
    for split, hidden in truth.items():
        labels = pd.read_csv(folder / f"{split}_labels.csv")
        last = pd.read_csv(folder / readouts_file(split), usecols=["vehicle_id", "time_step"]
                           ).groupby("vehicle_id")["time_step"].max()
        frame = hidden.merge(labels, on="vehicle_id", validate="one_to_one")
        ttf = frame["study"].to_numpy() - last.loc[frame["vehicle_id"]].to_numpy()
        expected = np.where(frame["event"], class_from_ttf(ttf, windows), 0)
        assert (frame["class_label"].to_numpy() == expected).all()
        # Some class-0 vehicles fail later in their study, as in any random cut.
        assert (frame["event"] & (frame["class_label"] == 0)).sum() > 0


def test_every_label_is_the_class_of_the_last_readout(fleet):
    truth = evaluation_truth(11, 3000, {"validation": 5046, "test": 5045})
    check_labels_match_the_last_readout(fleet, truth, synthetic.CLASS_WINDOWS)


def test_labels_follow_the_windows_param(tmp_path):
    windows = (5.0, 10.0, 20.0, 40.0)
    synthetic.generate(tmp_path, 50, 600, 600, seed=4, windows=windows, progress=False)
    truth = evaluation_truth(4, 50, {"validation": 600, "test": 600}, windows)
    check_labels_match_the_last_readout(tmp_path, truth, windows)


def logistic_fit(x: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood logistic regression (Newton steps): coefficients and their SEs."""
    design = np.column_stack([np.ones(len(x)), x])
    beta = np.zeros(design.shape[1])
    for _ in range(25):
        p = 1 / (1 + np.exp(-design @ beta))
        information = design.T @ (design * (p * (1 - p))[:, None])
        beta += np.linalg.solve(information, design.T @ (event - p))
    return beta[1:], np.sqrt(np.diag(np.linalg.inv(information)))[1:]


def risk_factors(vehicles) -> np.ndarray:
    specs = vehicles.specs
    return np.column_stack([np.log(vehicles.usage), specs[:, 1] % 4 == 1, specs[:, 4] == 1,
                            specs[:, 6] < 3]).astype(float)


def test_the_risk_relation_is_the_same_in_train_validation_and_test():
    """Usage and specifications drive failure alike in every split: validation and test are
    selected on their label only, which keeps these odds ratios (as a case-control sample)."""
    seed = 13
    spec_probs = synthetic.spec_probabilities(np.random.default_rng([seed, 0]))
    train = synthetic.sample_vehicles(np.random.default_rng([seed, 1]), np.arange(20_000),
                                      spec_probs)
    held_out = synthetic.concat([
        evaluation_vehicles(seed, index, split, 5046, spec_probs, synthetic.CLASS_WINDOWS)
        for index, split in ((2, "validation"), (3, "test"))])
    train_beta, train_se = logistic_fit(risk_factors(train), train.event)
    held_beta, held_se = logistic_fit(risk_factors(held_out), held_out.event)
    assert train_beta[0] == pytest.approx(1.5, abs=3 * train_se[0])  # the generator's slope
    assert (np.abs(train_beta - held_beta) < 3 * np.hypot(train_se, held_se)).all()


def test_unknown_signal_is_refused(tmp_path):
    with pytest.raises(ParamsError, match="synthetic.signal"):
        synthetic.generate(tmp_path, 5, 5, 5, seed=0, signal="loud", progress=False)


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


def test_componentx_synthetic_writes_the_layout(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "fleet"
    command = [sys.executable, "-m", "componentx", "synthetic", "--out", str(out),
               "--n-train", "20", "--n-validation", "30", "--n-test", "30", "--seed", "2"]
    subprocess.run(command, check=True, capture_output=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{s}_{kind}.csv" for s in SPLITS for kind in ("operational_readouts", "specifications")]
        + ["train_tte.csv", "validation_labels.csv", "test_labels.csv"])
    again = subprocess.run(command, capture_output=True, text=True)
    assert again.returncode == 1 and "is not empty" in again.stderr
