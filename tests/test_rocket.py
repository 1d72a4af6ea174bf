"""MiniRocket over windows of any length, its probabilistic head, and its files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import window_set

from componentx.data.tasks import motif
from componentx.data.window_set import WindowSet
from componentx.decisions.calibration import softmax
from componentx.errors import BundleError, UserError
from componentx.rocket.candidate import ARRAYS, MiniRocket
from componentx.rocket.kernels import MIN_LENGTH, fit_kernels, real_steps, transform
from componentx.rocket.model import FittedRocket, fit_rocket

SETTINGS = {"kernels": 168, "l2": 0.3, "max_iter": 100, "class_weights": "inverse", "seed": 0}


def left_padded(sequences, size, padding=0.0):
    x = np.full((len(sequences), size, sequences[0].shape[1]), padding, dtype=np.float32)
    for i, sequence in enumerate(sequences):
        x[i, size - len(sequence):] = sequence
    return x, np.array([len(s) for s in sequences])


def shapes(seed: int, n: int, size: int = 32) -> WindowSet:
    """Windows of 16 to ``size`` readouts, two channels of noise; the class (one of three) is
    the shape of a motif in the first channel."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    lengths = rng.integers(16, size + 1, n)
    rows = []
    for label, length in zip(labels, lengths, strict=True):
        values = rng.normal(0, 0.3, (length, 2)).astype(np.float32)
        values[:, 0] += motif(("sine", "square", "ramp_up")[label], length)
        rows.append(values)
    inputs = np.concatenate([*rows, np.zeros((1, 2), np.float32)])
    windows = pd.DataFrame({"vehicle_id": np.arange(n), "ref_time": 0.0, "class_label": labels,
                            "end_row": np.cumsum(lengths), "length": lengths})
    return WindowSet([inputs], [np.zeros(len(inputs))], windows, rng.integers(0, 3, (n, 1)),
                     size)


def window_logits(model: FittedRocket, windows: WindowSet) -> np.ndarray:
    everything = np.arange(len(windows))
    return model.logits(windows.arrays(everything), windows.length, windows.specs)


def test_padding_is_never_read():
    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(n, 3)).astype(np.float32) for n in (5, 12, 30, 32)]
    x32, lengths = left_padded(sequences, 32)
    kernels = fit_kernels(x32, lengths, 168, seed=0)
    features = transform(kernels, x32, lengths)
    x64, _ = left_padded(sequences, 64, padding=1e3)  # longer windows, padding that shouts
    np.testing.assert_array_equal(transform(kernels, x64, lengths), features)
    assert np.isfinite(features).all() and features.shape == (4, kernels.n_features)


def test_short_windows_repeat_their_first_readout_and_empty_ones_are_zeros():
    x, _ = left_padded([np.arange(1, 4, dtype=np.float32)[:, None] * [1, -1]], 8)
    values, steps = real_steps(np.concatenate([x, np.zeros_like(x)]), np.array([3, 0]))
    assert steps.tolist() == [MIN_LENGTH, MIN_LENGTH]
    assert values[0, :MIN_LENGTH].tolist() == [1] * (MIN_LENGTH - 2) + [2, 3]
    assert values[1, :MIN_LENGTH].tolist() == [-1] * (MIN_LENGTH - 2) + [-2, -3]
    assert (values[:, MIN_LENGTH:] == 0).all()


def test_the_head_gives_probabilities_and_the_files_give_the_same_logits(tmp_path):
    train, test = shapes(0, 90), shapes(1, 60)
    model, priors = fit_rocket(train, 3, [3], SETTINGS)
    logits = window_logits(model, test)
    assert logits.shape == (60, 3) and priors.shape == (3,)
    probs = softmax(logits)
    # not one-hot: at least a tenth of the windows are less than 99% sure (calibration has
    # work), and the head is right where chance is 1/3
    assert (probs.max(axis=1) < 0.99).mean() > 0.1
    assert (logits.argmax(axis=1) == test.labels).mean() > 0.9
    arrays = model.to_arrays()
    np.testing.assert_array_equal(
        window_logits(FittedRocket.from_arrays(arrays, model.spec_cardinalities), test), logits)


def saved_candidate(folder):
    """A MiniRocket candidate saved in ``folder`` (4 inputs: 3 features and the age)."""
    from componentx.data.features import FeatureStats

    model, priors = fit_rocket(window_set(0, 100), 5, [3], SETTINGS)
    candidate = MiniRocket({})
    candidate.model, candidate.train_priors, candidate.size = model, priors, 8
    candidate.stats = FeatureStats("cumulative", ["a", "b"], [], ["a", "b"], [10, 10],
                                   [0.0, 0.0], [1.0, 1.0])
    folder.mkdir()
    candidate.save(folder)
    return candidate


def test_the_candidate_files_load_as_the_same_model(tmp_path):
    candidate = saved_candidate(tmp_path / "rocket")
    loaded = MiniRocket.load(tmp_path / "rocket")
    for name, array in candidate.model.to_arrays().items():
        np.testing.assert_array_equal(loaded.model.to_arrays()[name], array)
    np.testing.assert_array_equal(loaded.train_priors, candidate.train_priors)
    assert loaded.stats == candidate.stats and loaded.size == 8


def test_a_file_that_needs_pickle_is_refused(tmp_path):
    saved_candidate(tmp_path / "rocket")
    arrays = dict(np.load(tmp_path / "rocket" / ARRAYS))
    arrays["coef"] = np.array([{"payload": "code"}], dtype=object)
    np.savez(tmp_path / "rocket" / ARRAYS, **arrays)
    with pytest.raises(BundleError, match="cannot be read"):
        MiniRocket.load(tmp_path / "rocket")


def test_a_single_class_is_a_clear_error():
    windows = window_set(0, 50)
    windows.labels[:] = 0
    with pytest.raises(UserError, match="single class"):
        fit_rocket(windows, 5, [3], SETTINGS)
