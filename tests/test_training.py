"""Training: class weights, checkpoints, exact resume, determinism, clear failures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from componentx import training
from componentx.dataset import WindowSet
from componentx.errors import StageError
from componentx.metrics import OFFICIAL_COST
from componentx.models import ModelConfig

COST = np.array(OFFICIAL_COST, dtype=float)


def window_set(seed: int, vehicles: int = 120, size: int = 8) -> WindowSet:
    """Readouts whose last value carries the class, so a model can learn something."""
    rng = np.random.default_rng(seed)
    per_vehicle = rng.integers(3, 12, vehicles)
    rows = per_vehicle.sum()
    features = rng.normal(size=(rows + 1, 4)).astype(np.float32)
    features[-1] = 0
    ends = np.cumsum(per_vehicle)
    labels = rng.choice(5, vehicles, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    features[ends - 1, 0] += labels
    windows = pd.DataFrame({"vehicle_id": np.arange(vehicles), "ref_time": 0.0,
                            "class_label": labels, "end_row": ends,
                            "length": np.minimum(per_vehicle, size)})
    specs = rng.integers(0, 3, (vehicles, 1))
    return WindowSet(features, np.zeros(rows), windows, specs, size)


def configs(tmp_path, **train_overrides):
    model = ModelConfig(arch="lstm", n_features=5, num_classes=5, spec_cardinalities=[3],
                        hidden_size=8, head_hidden=8)
    settings = {"epochs": 4, "batch_size": 16, "lr": 5e-3, "patience": 10, "device": "cpu",
                "num_threads": 1, "monitor": "macro_f1", "min_steps": 0, **train_overrides}
    train = training.TrainConfig(**settings)
    return model, train


def run(tmp_path, name, resume_from=None, on_epoch_end=None, **overrides):
    model, config = configs(tmp_path, **overrides)
    return training.train(model, config, window_set(0), window_set(1), COST, tmp_path / name,
                          "fingerprint", resume_from, on_epoch_end)


def test_inverse_class_weights():
    labels = np.array([0] * 6 + [1] * 3 + [2] * 1)
    weights = training.class_weight_tensor("inverse", labels, 4)
    # counts 6, 3, 1, 0 -> 1/6, 1/3, 1 relative; mean over present classes is 1.
    ratio = weights[:3] / weights[0]
    assert torch.allclose(ratio, torch.tensor([1.0, 2.0, 6.0]))
    assert weights[:3].mean() == pytest.approx(1.0) and weights[3] == 0
    assert training.class_weight_tensor("none", labels, 4) is None
    assert training.class_weight_tensor([1, 2, 3, 4], labels, 4).tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="train.class_weights"):
        training.class_weight_tensor([1, 2], labels, 4)


def test_balanced_sampler_draws_classes_evenly():
    labels = np.array([0] * 900 + [1] * 100)
    order = training.epoch_order(labels, seed=0, epoch=0, balanced=True)
    assert 0.4 < labels[order].mean() < 0.6
    assert (training.epoch_order(labels, 0, 3, False) == training.epoch_order(
        labels, 0, 3, False)).all()


def test_checkpoint_round_trip(tmp_path):
    state = run(tmp_path, "a", epochs=1)
    assert state.epoch == 1 and state.finished
    model, checkpoint = training.load_model(tmp_path / "a" / "best.pt")
    assert checkpoint["state"]["epoch"] == 1
    assert set(checkpoint) >= {"config", "model", "optimizer", "scheduler", "rng", "state",
                               "train_config", "fingerprint"}
    saved = torch.load(tmp_path / "a" / "best.pt", weights_only=False)["model"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, saved[name])


def test_resume_matches_an_uninterrupted_run(tmp_path):
    straight = run(tmp_path, "straight")

    def interrupt(epoch, *_):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "resumed", on_epoch_end=interrupt)
    checkpoint = training.resumable_checkpoint(tmp_path / "resumed" / "last.pt", "fingerprint")
    assert checkpoint is not None and checkpoint["state"]["epoch"] == 2
    resumed = run(tmp_path, "resumed", resume_from=checkpoint)
    assert resumed.epoch == 4
    assert resumed.history == straight.history
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_changed_fingerprint_or_finished_run_starts_fresh(tmp_path):
    run(tmp_path, "a", epochs=2)
    assert training.resumable_checkpoint(tmp_path / "a" / "last.pt", "other") is None
    assert training.resumable_checkpoint(tmp_path / "a" / "last.pt", "fingerprint") is None
    assert training.resumable_checkpoint(tmp_path / "missing.pt", "fingerprint") is None


def test_same_seed_same_metrics(tmp_path):
    assert run(tmp_path, "a", epochs=2).history == run(tmp_path, "b", epochs=2).history
    assert run(tmp_path, "c", epochs=2, seed=1).history != run(tmp_path, "a", epochs=2).history


def test_corrupt_checkpoint_gives_a_way_forward(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(training.CheckpointError, match="delete it"):
        training.resumable_checkpoint(path, "fingerprint")
    torch.save({"weights": 1}, path)
    with pytest.raises(training.CheckpointError, match="not a componentx checkpoint"):
        training.load_model(path)


def test_divergence_stops_with_epoch_and_step(tmp_path):
    model, config = configs(tmp_path, epochs=1)
    bad = window_set(0)
    bad.features[:-1, 0] = float("nan")
    with pytest.raises(training.TrainingDiverged, match="epoch 1, step 1"):
        training.train(model, config, bad, window_set(1), COST, tmp_path / "m", "f")
    assert not (tmp_path / "m" / "last.pt").exists()


def test_bad_monitor_and_scheduler(tmp_path):
    with pytest.raises(ValueError, match="train.monitor"):
        run(tmp_path, "a", monitor="auc")
    with pytest.raises(ValueError, match="train.scheduler"):
        run(tmp_path, "b", scheduler="linear")


def test_effective_priors_follow_weights_and_sampler():
    labels = np.array([0] * 90 + [1] * 10)
    frequencies = training.effective_priors(labels, None, False, 2)
    assert np.allclose(frequencies, [90.5 / 101, 10.5 / 101])
    weights = training.class_weight_tensor("inverse", labels, 2)
    assert np.allclose(training.effective_priors(labels, weights, False, 2), [0.5, 0.5],  # smoothed
                       atol=0.03)
    assert np.allclose(training.effective_priors(labels, None, True, 2), [0.5, 0.5])


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
    with pytest.raises(ValueError, match="train.loss"):
        training.make_loss(training.TrainConfig(loss="hinge"), None)


@pytest.mark.parametrize("arch", ["cnn_lstm", "attention_lstm", "transformer"])
def test_every_architecture_trains_through_the_loop(tmp_path, arch):
    model = ModelConfig(arch=arch, n_features=5, num_classes=5, spec_cardinalities=[3],
                        hidden_size=8, head_hidden=8, conv_channels=4, num_heads=2)
    _, config = configs(tmp_path, epochs=1, loss="focal")
    state = training.train(model, config, window_set(0), window_set(1), COST, tmp_path, "f")
    assert state.epoch == 1 and np.isfinite(state.history[0]["train"]["loss"])


def test_augmented_training_is_deterministic_on_cpu(tmp_path):
    a = run(tmp_path, "a", augment=["jitter", "crop", "mixup"], epochs=2)
    b = run(tmp_path, "b", augment=["jitter", "crop", "mixup"], epochs=2)
    plain = run(tmp_path, "plain", epochs=2)
    assert a.history == b.history
    assert a.history != plain.history
    with pytest.raises(ValueError, match="train.augment"):
        run(tmp_path, "bad", augment=["rotate"])


def test_the_budget_fits_the_data():
    defaults = training.TrainConfig(epochs=15, batch_size=128, patience=5)
    # The default Component X run: unchanged.
    big = training.fit_budget(defaults, n_train=12_061, n_validation=5_046)
    assert (big.batch_size, big.epochs, big.patience) == (128, 15, 5)
    assert (big.monitor, big.smoothing) == ("expected_cost", 1)
    # A few dozen series: small batches, enough steps, no early stopping on noise.
    tiny = training.fit_budget(defaults, n_train=29, n_validation=10)
    assert tiny.batch_size == 8 and tiny.epochs == 250  # 4 steps per epoch, 1000 steps
    assert tiny.patience == 50 and (tiny.monitor, tiny.smoothing) == ("none", 1)
    # What the user sets explicitly stays.
    fixed = training.fit_budget(training.TrainConfig(monitor="macro_f1", smoothing=2,
                                                     min_steps=0), 29, 10)
    assert (fixed.monitor, fixed.smoothing, fixed.epochs) == ("macro_f1", 2, 20)
    # An explicit monitor on a small validation set is averaged over a few epochs.
    chosen = training.fit_budget(training.TrainConfig(monitor="loss"), 29, 10)
    assert (chosen.monitor, chosen.smoothing) == ("loss", training.SMALL_SMOOTHING)
    with pytest.raises(StageError, match="no training windows"):
        training.fit_budget(defaults, 0, 10)


def test_without_a_monitor_the_last_epoch_is_kept(tmp_path):
    state = run(tmp_path, "last", epochs=5, monitor="none", patience=1, smoothing=3)
    assert state.epoch == 5 and state.best_epoch == 5
    assert all("none" not in h["validation"] for h in state.history)  # nothing made up logged


def test_smoothing_averages_the_monitored_value_over_epochs(tmp_path):
    plain = run(tmp_path, "plain", epochs=6, monitor="loss", smoothing=1)
    smooth = run(tmp_path, "smooth", epochs=6, monitor="loss", smoothing=3)
    losses = [h["validation"]["loss"] for h in smooth.history]
    averaged = [np.mean(losses[max(0, i - 2):i + 1]) for i in range(len(losses))]
    assert smooth.best_metric == pytest.approx(min(averaged))
    assert plain.best_metric == pytest.approx(min(losses))
