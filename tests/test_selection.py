"""The selection windows: the validation split, or folds of whole vehicles when data are few."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from componentx.decisions.selection import (
    inner_split,
    plan_selection,
    vehicle_folds,
    vehicle_keys,
)
from componentx.errors import UserError


def labelled(seed: int, vehicles: int, per_vehicle: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.repeat(np.arange(vehicles), per_vehicle)
    worst = rng.choice(3, vehicles, p=[0.7, 0.2, 0.1])
    labels = np.minimum(np.repeat(worst, per_vehicle), rng.integers(0, 3, len(ids)))
    labels[np.arange(vehicles) * per_vehicle] = worst  # each vehicle's largest class is `worst`
    return pd.DataFrame({"vehicle_id": ids, "ref_time": np.tile(np.arange(per_vehicle),
                                                                vehicles).astype(float),
                         "class_label": labels, "bucket": 0, "end_row": 0, "length": 1})


def test_folds_hold_whole_vehicles_stratified_and_do_not_depend_on_row_order():
    frame = labelled(0, 90)
    split = np.repeat([0, 1], [240, 120])
    fold = vehicle_folds(split, frame["vehicle_id"].to_numpy(), frame["class_label"].to_numpy(),
                         5, seed=0)
    per_vehicle = pd.DataFrame({"split": split, "vehicle": frame["vehicle_id"], "fold": fold})
    assert (per_vehicle.groupby(["split", "vehicle"])["fold"].nunique() == 1).all()
    largest = frame.assign(split=split, fold=fold).groupby(["split", "vehicle_id"]).agg(
        label=("class_label", "max"), fold=("fold", "first"))
    counts = pd.crosstab(largest["label"], largest["fold"])
    assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()  # every class in every fold
    order = np.random.default_rng(1).permutation(len(frame))
    shuffled = vehicle_folds(split[order], frame["vehicle_id"].to_numpy()[order],
                             frame["class_label"].to_numpy()[order], 5, seed=0)
    np.testing.assert_array_equal(shuffled, fold[order])
    other = vehicle_folds(split, frame["vehicle_id"].to_numpy(),
                          frame["class_label"].to_numpy(), 5, seed=1)
    assert not np.array_equal(other, fold)


def write_windows(folder, train: pd.DataFrame, validation: pd.DataFrame):
    folder.mkdir()
    train.to_parquet(folder / "train_windows.parquet")
    validation.to_parquet(folder / "validation_windows.parquet")
    return folder


def test_few_windows_are_cross_validated_and_many_use_the_validation_split(tmp_path):
    windows = write_windows(tmp_path / "windows", labelled(0, 60), labelled(1, 20))
    settings = {"cross_validate_below": 1000, "folds": 5, "seed": 0}
    selection = plan_selection(windows, settings)
    assert selection.cross_validated and selection.splits == ("train", "validation")
    assert len(selection.windows) == 320 and selection.to_dict() == {
        "mode": "cross_validation", "folds": 5, "windows": 320, "vehicles": 80}
    held = [predicted for _, _, predicted in selection.split_folds()]
    np.testing.assert_array_equal(np.sort(np.concatenate(held)), np.arange(320))  # once each
    for _, fitted, predicted in selection.split_folds():
        both = selection.windows[["split", "vehicle_id"]]
        assert not set(map(tuple, both.iloc[fitted].to_numpy())) & set(
            map(tuple, both.iloc[predicted].to_numpy()))
    large = plan_selection(windows, {**settings, "cross_validate_below": 320})
    assert large.mode == "validation" and len(large.windows) == 80 and large.fold is None


def test_one_vehicle_cannot_be_cross_validated(tmp_path):
    windows = write_windows(tmp_path / "windows", labelled(0, 1), labelled(1, 1).iloc[:0])
    with pytest.raises(UserError, match="too few to cross-validate"):
        plan_selection(windows, {"cross_validate_below": 1000, "folds": 5, "seed": 0})


def test_deployment_priors_come_from_the_validation_split(tmp_path):
    """Cross-validated, the selection windows hold train windows too, whose reference readouts
    are drawn another way; the deployment class mix is validation's."""
    train, validation = labelled(0, 60), labelled(1, 20)
    train["class_label"] = 2  # train windows drawn close to failures
    windows = write_windows(tmp_path / "windows", train, validation)
    selection = plan_selection(windows, {"cross_validate_below": 1000, "folds": 5, "seed": 0})
    np.testing.assert_array_equal(selection.deployment_labels,
                                  validation["class_label"].to_numpy())
    large = plan_selection(windows, {"cross_validate_below": 0, "folds": 5, "seed": 0})
    np.testing.assert_array_equal(large.deployment_labels, validation["class_label"].to_numpy())


def test_an_inner_split_sets_a_fifth_of_whole_vehicles_apart_keyed_and_stratified():
    frame = labelled(1, 200)
    split = np.repeat([0, 1], [500, 300])
    vehicles, labels = frame["vehicle_id"].to_numpy(), frame["class_label"].to_numpy()
    fit, tune = inner_split(split, vehicles, labels, seed=0)
    assert len(np.intersect1d(fit, tune)) == 0 and len(fit) + len(tune) == len(frame)
    key = split * 1000 + vehicles
    assert not set(key[fit]) & set(key[tune])  # whole vehicles
    tuned_vehicles = len(set(key[tune]))
    assert 195 <= 5 * tuned_vehicles <= 205  # one in five of the 200 (split, vehicle) pairs
    worst = pd.Series(labels).groupby(key).max()
    share = worst.loc[sorted(set(key[tune]))].value_counts(normalize=True)
    assert abs(share.get(2, 0) - (worst == 2).mean()) < 0.05  # the rare class too
    order = np.random.default_rng(2).permutation(len(frame))
    _, moved_tune = inner_split(split[order], vehicles[order], labels[order], seed=0)
    assert set(key[order][moved_tune]) == set(key[tune])  # keyed, not positional
    _, other_tune = inner_split(split, vehicles, labels, seed=1)
    assert set(key[other_tune]) != set(key[tune])
    assert inner_split(np.zeros(3, dtype=np.int64), np.array([7, 7, 7]), np.zeros(3, int), 0) \
        is None  # a single vehicle: nothing to set apart


def test_vehicle_keys_keep_distinct_vehicles_of_two_splits_apart():
    keys = vehicle_keys(np.array([0, 1, 1, 0]), np.array([5, 5, 6, 5]))
    assert keys[0] == keys[3] and keys[0] != keys[1] and len(set(keys)) == 3
    assert keys.dtype == np.int64


def test_deployment_weights_give_the_deployment_class_mix():
    from componentx.decisions.evaluation import deployment_weights
    from componentx.decisions.priors import class_priors

    labels = np.array([0] * 80 + [1] * 20)  # selection windows: 20% class 1
    deployment = class_priors(np.array([0] * 95 + [1] * 5), 2)
    weights = deployment_weights(labels, deployment)
    mix = np.bincount(labels, weights=weights) / weights.sum()
    assert np.allclose(mix, deployment, atol=0.01)
    np.testing.assert_array_equal(deployment_weights(labels, class_priors(labels, 2)), 1.0)
