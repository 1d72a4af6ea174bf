"""Training: class weights, early stopping, checkpoints, exact resume, determinism, clear
failures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import COST, model_config, train_config, window_set

from componentx.decisions.priors import class_weights, training_priors
from componentx.errors import CheckpointError, UserError
from componentx.sequence import training
from componentx.sequence.checkpoints import load_model, resumable_checkpoint
from componentx.sequence.config import SMALL_SMOOTHING, fit_budget
from componentx.sequence.dataset import batch_of

SMALL = {"hidden_size": 8, "head_hidden": 8}


def run(tmp_path, name, resume_from=None, on_epoch_end=None, **overrides):
    settings = {"epochs": 4, "batch_size": 16, "lr": 5e-3, "patience": 10, "device": "cpu",
                "num_threads": 1, "monitor": "macro_f1", "min_steps": 0, **overrides}
    return training.train(model_config(**SMALL), train_config(**settings), window_set(0),
                          window_set(1), COST, tmp_path / name, "fingerprint", resume_from,
                          on_epoch_end)


def test_inverse_class_weights():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = class_weights("inverse", labels, 4)
    # counts 6, 3, 1, 0 -> 1/6, 1/3, 1 relative; mean over present classes is 1.
    assert weights[:3] / weights[0] == pytest.approx([1.0, 2.0, 6.0])
    assert weights[:3].mean() == pytest.approx(1.0) and weights[3] == 0
    assert class_weights("none", labels, 4) is None
    assert class_weights([1, 2, 3, 4], labels, 4).tolist() == [1, 2, 3, 4]
    with pytest.raises(UserError, match="train.class_weights"):
        class_weights([1, 2], labels, 4)


def test_balanced_sampler_draws_classes_evenly():
    labels = np.array([0] * 900 + [1] * 100)
    order = training.epoch_order(labels, seed=0, epoch=0, balanced=True)
    assert 0.4 < labels[order].mean() < 0.6
    assert (training.epoch_order(labels, 0, 3, False) == training.epoch_order(
        labels, 0, 3, False)).all()


def test_checkpoint_round_trip_as_data_only(tmp_path):
    state = run(tmp_path, "a", epochs=1)
    assert state.epoch == 1 and state.finished
    model, checkpoint = load_model(tmp_path / "a" / "best.pt")
    assert checkpoint["state"]["epoch"] == 1
    assert set(checkpoint) >= {"config", "model", "optimizer", "scheduler", "rng", "state",
                               "train_config", "fingerprint"}
    saved = torch.load(tmp_path / "a" / "best.pt", weights_only=True)["model"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name])


def test_resume_matches_an_uninterrupted_run(tmp_path):
    straight = run(tmp_path, "straight")

    def interrupt(epoch, *_):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "resumed", on_epoch_end=interrupt)
    checkpoint = resumable_checkpoint(tmp_path / "resumed" / "last.pt", "fingerprint")
    assert checkpoint is not None and checkpoint["state"]["epoch"] == 2
    resumed = run(tmp_path, "resumed", resume_from=checkpoint)
    assert resumed.epoch == 4
    assert resumed.history == straight.history
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_fingerprint_or_finished_run_starts_fresh(tmp_path):
    run(tmp_path, "a", epochs=2)
    assert resumable_checkpoint(tmp_path / "a" / "last.pt", "other") is None
    assert resumable_checkpoint(tmp_path / "a" / "last.pt", "fingerprint") is None
    assert resumable_checkpoint(tmp_path / "missing.pt", "fingerprint") is None


def test_same_seed_same_metrics(tmp_path):
    assert run(tmp_path, "a", epochs=2).history == run(tmp_path, "b", epochs=2).history
    assert run(tmp_path, "c", epochs=2, seed=1).history != run(tmp_path, "a", epochs=2).history


class Payload:
    """An object whose unpickling runs code: it creates a file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_corrupt_or_code_carrying_checkpoint_gives_a_way_forward(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="delete it"):
        resumable_checkpoint(path, "fingerprint")
    torch.save({"weights": 1}, path)
    with pytest.raises(CheckpointError, match="not a componentx checkpoint"):
        load_model(path)
    marker = tmp_path / "ran"
    torch.save({"config": {}, "model": {}, "state": Payload(marker)}, path)
    with pytest.raises(CheckpointError, match="beyond plain data"):
        resumable_checkpoint(path, "fingerprint")
    assert not marker.exists()


def test_divergence_stops_with_epoch_and_step(tmp_path):
    bad = window_set(0)
    bad.inputs[0][:-1, 0] = float("nan")
    config = train_config(epochs=1, batch_size=16, device="cpu", num_threads=1, min_steps=0)
    with pytest.raises(training.TrainingDiverged, match="epoch 1, step 1"):
        training.train(model_config(**SMALL), config, bad, window_set(1), COST, tmp_path / "m",
                       "f")
    assert not (tmp_path / "m" / "last.pt").exists()


def test_training_priors_follow_weights_and_sampler():
    labels = np.array([0] * 90 + [1] * 10)
    frequencies = training_priors(labels, None, False, 2)
    assert np.allclose(frequencies, [90.5 / 101, 10.5 / 101])
    weights = class_weights("inverse", labels, 2)
    assert np.allclose(training_priors(labels, weights, False, 2), [0.5, 0.5],  # smoothed
                       atol=0.03)
    assert np.allclose(training_priors(labels, None, True, 2), [0.5, 0.5])


def test_focal_loss_and_label_smoothing():
    torch.manual_seed(0)
    logits, y = torch.randn(64, 5) * 3, torch.randint(0, 5, (64,))
    weights = torch.tensor([0.2, 1.0, 2.0, 1.5, 3.0])
    plain = torch.nn.functional.cross_entropy(logits, y, weight=weights)
    assert torch.allclose(training.ClassificationLoss(weights)(logits, y), plain)
    focal = training.ClassificationLoss(None, gamma=2.0)
    easy = torch.tensor([[8.0, 0, 0, 0, 0]])
    hard = torch.tensor([[0.0, 0, 0, 0, 0]])
    zero = torch.tensor([0])
    ce = training.ClassificationLoss(None)
    assert focal(easy, zero) < 0.01 * ce(easy, zero)  # easy examples are down-weighted
    assert focal(hard, zero) > 0.6 * ce(hard, zero)
    smooth = training.ClassificationLoss(None, label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(logits, y, label_smoothing=0.1)
    assert torch.allclose(smooth(logits, y), expected)


@pytest.mark.parametrize("arch", ["cnn_lstm", "attention_lstm", "transformer"])
def test_every_architecture_trains_through_the_loop(tmp_path, arch):
    model = model_config(arch=arch, conv_channels=4, num_heads=2, **SMALL)
    config = train_config(epochs=1, loss="focal", batch_size=16, device="cpu", num_threads=1,
                          min_steps=0)
    state = training.train(model, config, window_set(0), window_set(1), COST, tmp_path, "f")
    assert state.epoch == 1 and np.isfinite(state.history[0]["train"]["loss"])


def test_augmented_training_is_deterministic_on_cpu(tmp_path):
    a = run(tmp_path, "a", augment=["jitter", "crop", "mixup"], epochs=2)
    b = run(tmp_path, "b", augment=["jitter", "crop", "mixup"], epochs=2)
    plain = run(tmp_path, "plain", epochs=2)
    assert a.history == b.history
    assert a.history != plain.history


def test_the_budget_fits_the_data():
    defaults = train_config()  # params.yaml
    # The default Component X run: unchanged.
    big = fit_budget(defaults, n_train=12_061, n_validation=5_046)
    assert (big.batch_size, big.epochs, big.patience) == (128, 15, 5)
    assert (big.monitor, big.smoothing) == ("expected_cost", 1)
    # A few dozen series: small batches, enough steps, no early stopping on noise.
    tiny = fit_budget(defaults, n_train=29, n_validation=10)
    assert tiny.batch_size == 8 and tiny.epochs == 250  # 4 steps per epoch, 1000 steps
    assert tiny.patience == 50 and (tiny.monitor, tiny.smoothing) == ("none", 1)
    # What the user sets explicitly stays.
    fixed = fit_budget(train_config(monitor="macro_f1", smoothing=2, min_steps=0), 29, 10)
    assert (fixed.monitor, fixed.smoothing, fixed.epochs) == ("macro_f1", 2, defaults.epochs)
    # An explicit monitor on a small validation set is averaged over a few epochs.
    chosen = fit_budget(train_config(monitor="loss"), 29, 10)
    assert (chosen.monitor, chosen.smoothing) == ("loss", SMALL_SMOOTHING)
    with pytest.raises(UserError, match="no training windows"):
        fit_budget(defaults, 0, 10)


def test_without_a_monitor_the_last_epoch_is_kept(tmp_path):
    state = run(tmp_path, "last", epochs=5, monitor="none", patience=1, smoothing=3)
    assert state.epoch == 5 and state.stopping.best_epoch == 5
    assert state.stopping.values == [] and state.stopping.best is None  # nothing made up
    best = torch.load(tmp_path / "last" / "best.pt", weights_only=True)
    last = torch.load(tmp_path / "last" / "last.pt", weights_only=True)
    assert all(torch.equal(best["model"][k], last["model"][k]) for k in last["model"])


def test_smoothing_averages_the_monitored_value_over_epochs(tmp_path):
    plain = run(tmp_path, "plain", epochs=6, monitor="loss", smoothing=1)
    smooth = run(tmp_path, "smooth", epochs=6, monitor="loss", smoothing=3)
    losses = [h["validation"]["loss"] for h in smooth.history]
    averaged = [np.mean(losses[max(0, i - 2):i + 1]) for i in range(len(losses))]
    assert smooth.stopping.best == pytest.approx(min(averaged))
    assert plain.stopping.best == pytest.approx(min([h["validation"]["loss"]
                                                     for h in plain.history]))


def test_early_stopping_keeps_the_best_and_stops_after_patience():
    stopping = training.EarlyStopping("macro_f1", patience=2)
    improved = [stopping.update(epoch, {"macro_f1": value})
                for epoch, value in enumerate([0.2, 0.5, 0.4, 0.5, 0.45], start=1)]
    assert improved == [True, True, False, False, False]
    assert stopping.best_epoch == 2 and stopping.best == 0.5 and stopping.should_stop
    lower = training.EarlyStopping("loss", patience=5, smoothing=2)
    for epoch, value in enumerate([1.0, 0.6, 0.9, 0.7], start=1):
        lower.update(epoch, {"loss": value})
    assert lower.best_epoch == 3 and lower.best == pytest.approx(0.75)  # (0.6 + 0.9) / 2
    last = training.EarlyStopping("none", patience=1)
    assert all(last.update(epoch, {"loss": 9.0}) for epoch in range(1, 5))
    assert last.best_epoch == 4 and not last.should_stop


def test_the_logged_training_loss_is_the_batches_weighted_loss(tmp_path):
    """The epoch's training loss: each batch's class-weighted cross-entropy, averaged over the
    windows (with lr 0 the model stays at its initial weights, so it can be recomputed)."""
    train_set = window_set(0, vehicles=40)
    model = model_config(dropout=0.0, **SMALL)
    config = train_config(epochs=1, lr=0.0, min_steps=0, device="cpu", num_threads=1,
                          scheduler="none", monitor="loss")
    torch.manual_seed(config.seed)
    initial = training.build_model(model).eval()
    labels = train_set.labels
    weights = torch.from_numpy(class_weights("inverse", labels, 5))
    order = training.epoch_order(labels, config.seed, 0, False)
    batch_size = fit_budget(config, 40, 40).batch_size
    total = 0.0
    with torch.no_grad():
        for start in range(0, 40, batch_size):
            batch = batch_of(train_set, order[start:start + batch_size])
            loss = torch.nn.functional.cross_entropy(
                initial(batch.x, batch.lengths, batch.specs), batch.y, weight=weights)
            total += loss.item() * len(batch.y)
    state = training.train(model, config, train_set, window_set(1), COST, tmp_path, "f")
    assert batch_size < 40  # several batches
    assert state.history[0]["train"]["loss"] == pytest.approx(total / 40, rel=1e-5)


def long_window_set(size: int = 400):
    """A shape task with windows of ``size`` readouts: one channel, three motifs anywhere in
    noise (no history channels; the age is the readouts' distance from the end)."""
    from componentx.data.tasks import Task, series
    from componentx.data.window_set import WindowSet

    task = Task("long", series=96, classes=3, min_length=size, max_length=size, channels=1,
                noise=0.4, kind="shape", seed=3)
    data, labels = series(task)
    values = np.concatenate(data)
    inputs = np.zeros((len(values) + 1, 3), np.float32)
    inputs[:-1, 0] = ((values - values.mean()) / values.std())[:, 0]
    times = np.concatenate([np.arange(size, dtype=float)] * len(data))
    windows = pd.DataFrame({"vehicle_id": np.arange(len(data)), "ref_time": size - 1.0,
                            "class_label": labels, "end_row": np.arange(1, len(data) + 1) * size,
                            "length": size})
    return WindowSet([inputs], [times], windows, np.zeros((len(data), 0), np.int64), size)


def test_an_lstm_fits_windows_of_hundreds_of_readouts(tmp_path):
    """Over 400 readouts an LSTM's gradient fades before it reaches the motif: read as
    patches (model.max_steps, the default), it fits its training set within the budget."""
    windows = long_window_set()
    config = model_config(hidden_size=32, head_hidden=32, n_features=windows.n_inputs,
                          num_classes=3, spec_cardinalities=[], window=windows.size)
    state = training.train(config, train_config(epochs=150, batch_size=32, min_steps=0,
                                                monitor="none", device="cpu", num_threads=1),
                           windows, None, np.ones((3, 3)) - np.eye(3), tmp_path, "long")
    assert config.patch > 1
    assert state.history[-1]["train"]["loss"] < 0.3, [h["train"]["loss"] for h in state.history]
