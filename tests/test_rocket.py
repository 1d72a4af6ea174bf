"""MiniRocket over windows of any length, its probabilistic head, and its files."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest
from conftest import window_set

from componentx.data.tasks import motif
from componentx.data.window_set import WindowSet
from componentx.decisions.calibration import softmax
from componentx.decisions.priors import class_weights, training_priors
from componentx.errors import BundleError, UserError
from componentx.rocket.candidate import ARRAYS, MiniRocket
from componentx.rocket.head import ABSENT_CLASS_LOGIT, ALPHAS, fit_head, fit_ridge
from componentx.rocket.kernels import MIN_LENGTH, fit_kernels, real_steps, transform
from componentx.rocket.model import FittedRocket, rocket_kernels

SETTINGS = {"kernels": 168, "channels": "readouts", "class_weights": "inverse", "seed": 0}


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


def fitted(windows: WindowSet, classes: int) -> tuple[FittedRocket, np.ndarray]:
    """MiniRocket fitted on an in-memory window set (one readout channel, one specification
    of 3 codes) as :func:`~componentx.rocket.model.fit_rocket` fits it (there, the head's
    features are computed bucket by bucket: ``tests/test_cluster.py``), and its priors."""
    model = rocket_kernels(windows, 1, [3], SETTINGS)
    weights = class_weights("inverse", windows.labels, classes, "rocket.class_weights")
    everything = np.arange(len(windows))
    model.head = fit_head(model.features(windows.arrays(everything), windows.length,
                                         windows.specs), windows.labels, weights, classes, {})
    return model, training_priors(windows.labels, weights, False, classes)


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


def test_readouts_are_convolved_and_the_history_and_age_only_set_beside():
    """Model-input windows: 2 readouts, the 2 history channels, the age. With ``readouts``
    the kernels read the first two alone; the last three count only at the last step."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 20, 5)).astype(np.float32)
    lengths, specs = np.array([20, 20, 15, 9, 3, 20]), np.zeros((6, 1), dtype=np.int64)
    kernels = fit_kernels(x[:, :, :2], lengths, 168, seed=0)
    model = FittedRocket(kernels, "readouts", 2, [1], None)
    features = model.features(x, lengths, specs)
    assert features.shape == (6, kernels.n_features + 3 + 1)
    np.testing.assert_array_equal(features[:, kernels.n_features:-1], x[:, -1, 2:])
    ramps = x.copy()
    ramps[:, :-1, 2:] = np.linspace(0, 50, 19)[None, :, None]  # history and age, not last
    np.testing.assert_array_equal(model.features(ramps, lengths, specs), features)
    everything = FittedRocket(fit_kernels(x, lengths, 168, seed=0), "inputs", 2, [1], None)
    assert everything.features(x, lengths, specs).shape == (6, kernels.n_features + 1)
    assert not np.array_equal(everything.features(ramps, lengths, specs),
                              everything.features(x, lengths, specs))


def test_short_windows_repeat_their_first_readout_and_empty_ones_are_zeros():
    x, _ = left_padded([np.arange(1, 4, dtype=np.float32)[:, None] * [1, -1]], 8)
    values, steps = real_steps(np.concatenate([x, np.zeros_like(x)]), np.array([3, 0]))
    assert steps.tolist() == [MIN_LENGTH, MIN_LENGTH]
    assert values[0, :MIN_LENGTH].tolist() == [1] * (MIN_LENGTH - 2) + [2, 3]
    assert values[1, :MIN_LENGTH].tolist() == [-1] * (MIN_LENGTH - 2) + [-2, -3]
    assert (values[:, MIN_LENGTH:] == 0).all()


def test_the_head_gives_probabilities_and_the_files_give_the_same_logits():
    train, test = shapes(0, 90), shapes(1, 60)
    model, priors = fitted(train, 3)
    logits = window_logits(model, test)
    assert logits.shape == (60, 3) and priors.shape == (3,)
    probs = softmax(logits)
    # not one-hot: at least a tenth of the windows are less than 99% sure (calibration has
    # work), and the head is right where chance is 1/3
    assert (probs.max(axis=1) < 0.99).mean() > 0.1
    assert (logits.argmax(axis=1) == test.labels).mean() > 0.9
    arrays = model.to_arrays()
    head = {"kind": model.head.kind, "alpha": model.head.alpha, "errors": model.head.errors}
    np.testing.assert_array_equal(window_logits(FittedRocket.from_arrays(
        arrays, model.channels, model.readouts, model.spec_cardinalities, head), test), logits)


def saved_candidate(folder):
    """A MiniRocket candidate saved in ``folder`` (4 inputs: 3 features and the age)."""
    from componentx.data.features import FeatureStats

    model, priors = fitted(window_set(0, 100), 5)
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
    meta = json.loads((tmp_path / "rocket" / "rocket.json").read_text())
    del meta["channels"], meta["readouts"]  # a bundle from before rocket.channels
    (tmp_path / "rocket" / "rocket.json").write_text(json.dumps(meta))
    assert MiniRocket.load(tmp_path / "rocket").model.channels == "inputs"


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
        rocket_kernels(windows, 1, [3], SETTINGS)


def test_the_ridge_head_chooses_the_standard_pipeline_s_penalty_and_predictions():
    """Without class weights, on standardised features, the dual head is scikit-learn's
    RidgeClassifierCV with the same penalties (leave-one-out)."""
    from sklearn.linear_model import RidgeClassifierCV

    rng = np.random.default_rng(3)
    for n, d, classes in ((60, 200, 3), (40, 500, 5), (150, 300, 2)):
        x = rng.normal(size=(n, d))
        y = rng.integers(0, classes, n)
        x[:, :5] += y[:, None] * rng.uniform(0.2, 1.0)  # a weak signal
        x = (x - x.mean(axis=0)) / x.std(axis=0)
        test = rng.normal(size=(30, d))
        ours = fit_ridge(x, y, np.ones(n), classes)
        theirs = RidgeClassifierCV(alphas=ALPHAS).fit(x, y)
        assert ours.alpha == pytest.approx(theirs.alpha_)
        np.testing.assert_array_equal(ours.scores(test).argmax(axis=1), theirs.predict(test))


def test_the_head_is_ridge_up_to_as_many_windows_as_features_then_logistic():
    """The regime follows the windows; class weights are normalised (uniform weights of any
    size change nothing); a class no window has gets a very low score."""
    rng = np.random.default_rng(4)
    settings = {"l2": 0.3, "max_iter": 200}
    for n, d, kind in ((60, 80, "ridge"), (600, 40, "logistic")):
        y = np.arange(n) % 3  # class 3 of 4 never occurs
        x = rng.normal(size=(n, d)) + 3 * rng.normal(size=d)  # features off centre
        x[:, 0] += 4 * y
        head = fit_head(x, y, None, 4, settings)
        assert head.kind == kind
        assert (head.scores(x).argmax(axis=1) == y).mean() > 0.8  # chance is 1/3
        assert (head.scores(x)[:, 3] == ABSENT_CLASS_LOGIT).all()
        tripled = fit_head(x, y, np.full(4, 3.0), 4, settings)
        np.testing.assert_allclose(tripled.scores(x), head.scores(x), rtol=1e-6, atol=1e-6)
    assert head.calibration("temperature") == "temperature"
    assert fit_head(x[:30], y[:30], None, 4, settings).calibration("temperature") == \
        "bias_temperature"


@pytest.mark.parametrize(("classes", "spill_bytes"), [(2, 0), (4, 0), (4, 2**30)])
def test_the_logistic_head_read_block_by_block_is_scikit_learn_s(tmp_path, classes,
                                                                 spill_bytes):
    """More rows than a block, on disk (spilled past 0 bytes) or in memory: the head reaches
    the fit of scikit-learn's LogisticRegression with the same objective (weights of mean 1,
    C = 1 / (l2 * windows)) on the same standardised features."""
    from sklearn.linear_model import LogisticRegression

    from componentx.data.window_set import spilled_rows
    from componentx.rocket.head import READ_ROWS

    rng = np.random.default_rng(classes)
    n, d, l2 = READ_ROWS + 1500, 30, 1e-3
    y = rng.integers(0, classes, n)
    x = (rng.normal(size=(n, d)) + 2 * rng.normal(size=d)).astype(np.float32)
    x[:, :3] += (y[:, None] * rng.uniform(0.2, 0.5, 3)).astype(np.float32)
    class_weights = rng.uniform(0.5, 3.0, classes)
    chunks = np.array_split(x, 7)
    with spilled_rows(tmp_path / "features.npy", n, iter(chunks), spill_bytes) as features:
        assert isinstance(features, np.ndarray) == (spill_bytes > 0)
        ours = fit_head(features, y, class_weights, classes, {"l2": l2, "max_iter": 500})
    assert list(tmp_path.iterdir()) == []
    weights = class_weights[y] * n / class_weights[y].sum()
    standardised = (x - x.mean(axis=0, dtype=np.float64)) / x.std(axis=0, dtype=np.float64)
    theirs = LogisticRegression(C=1 / (l2 * n), max_iter=500, tol=1e-6).fit(
        standardised, y, sample_weight=weights)
    probs = softmax(ours.scores(x))
    np.testing.assert_allclose(probs, theirs.predict_proba(standardised), atol=2e-3)
    assert (probs.argmax(axis=1) == theirs.predict(standardised)).mean() > 0.99


def test_multirocket_reads_real_readouts_only_and_its_files_give_the_same_scores(tmp_path):
    from componentx.data.features import FeatureStats
    from componentx.rocket.multirocket import MIN_LENGTH, MultiRocket, edge_padded

    rng = np.random.default_rng(0)
    sequences = [rng.normal(size=(n, 3)).astype(np.float32) for n in (1, 5, 12, 16)]
    x16, lengths = left_padded(sequences, 16)
    x16_loud, _ = left_padded(sequences, 16, padding=1e3)
    padded = edge_padded(x16, lengths)
    np.testing.assert_array_equal(edge_padded(x16_loud, lengths), padded)  # never read
    assert padded.shape == (4, 3, 16)
    np.testing.assert_array_equal(padded[1, :, :11], np.repeat(sequences[1][:1].T, 11, axis=1))
    np.testing.assert_array_equal(padded[1, :, 11:], sequences[1].T)
    assert edge_padded(x16[:, -4:], np.minimum(lengths, 4)).shape[2] == MIN_LENGTH
    assert (edge_padded(x16, np.array([0, 5, 12, 16]))[0] == 0).all()  # an empty window

    candidate = MultiRocket({"multirocket": {"kernels": 84, "class_weights": "inverse",
                                             "seed": 0}})
    train = shapes(0, 90, size=16)
    candidate.seed, candidate.size, candidate.channels, candidate.kernels = 0, 16, 2, 84
    candidate.inputs, candidate.readouts = "inputs", 2
    candidate.spec_cardinalities = [3]
    candidate.stats = FeatureStats("cumulative", ["a"], [], ["a"], [1], [0.0], [1.0])
    everything = np.arange(len(train))
    candidate.transform = candidate._transformer(84).fit(
        edge_padded(train.arrays(everything), train.length))
    features = candidate._features(train.arrays(everything), train.length, train.specs)
    candidate.head = fit_ridge(features, train.labels, np.ones(len(train)), 3)
    candidate.train_priors = np.full(3, 1 / 3)
    assert (candidate.head.scores(features).argmax(axis=1) == train.labels).mean() > 0.9
    (tmp_path / "m").mkdir()
    candidate.save(tmp_path / "m")
    loaded = MultiRocket.load(tmp_path / "m")
    test = shapes(1, 30, size=16)
    np.testing.assert_array_equal(
        loaded.head.scores(loaded._features(test.arrays(np.arange(30)), test.length,
                                            test.specs)),
        candidate.head.scores(candidate._features(test.arrays(np.arange(30)), test.length,
                                                  test.specs)))


def test_head_scores_are_the_same_bits_whatever_the_blas_threads(tmp_path):
    """Scored in a process with one BLAS thread (a Dask worker) and with two (the stage's):
    the same bits (a BLAS matrix product splits its sums by thread on some CPUs)."""
    import subprocess
    import sys

    from componentx.rocket.head import LinearHead

    rng = np.random.default_rng(0)
    head = LinearHead("logistic", rng.normal(size=939), rng.uniform(1, 2, 939),
                      rng.normal(size=(5, 939)), rng.normal(size=5), 0.3, [])
    np.savez(tmp_path / "head.npz", features=rng.normal(size=(3000, 939)), mean=head.mean,
             scale=head.scale, coef=head.coef, intercept=head.intercept)
    script = ("import sys, numpy as np\n"
              "from componentx.rocket.head import LinearHead\n"
              "a = np.load(sys.argv[1])\n"
              "head = LinearHead('logistic', a['mean'], a['scale'], a['coef'], a['intercept'],"
              " 0.3, [])\n"
              "sys.stdout.write(head.scores(a['features']).tobytes().hex())\n")
    outputs = {threads: subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "head.npz")], capture_output=True,
        text=True, check=True, env={**os.environ, "OPENBLAS_NUM_THREADS": threads,
                                    "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        ).stdout for threads in ("1", "2")}
    assert outputs["1"] and outputs["1"] == outputs["2"]
