"""Masked reconstruction pre-training and fine-tuning with a frozen encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_training import COST, window_set

from componentx import pretraining, training
from componentx.models import ModelConfig


@pytest.mark.parametrize("masking", pretraining.MASKINGS)
def test_masks_hide_real_steps_only_and_at_least_one(masking):
    generator = torch.Generator().manual_seed(0)
    lengths = torch.tensor([1, 5, 20, 20])
    hidden = pretraining.mask_steps(lengths, 24, 0.3, masking, 4, generator)
    assert hidden.shape == (4, 24)
    assert (hidden.sum(dim=1) >= 1).all()
    assert not hidden[torch.arange(24)[None, :] >= lengths[:, None]].any()
    share = hidden[2:].float().sum() / 40
    assert 0.15 < share < 0.6
    if masking == "patch":  # runs of hidden steps are at least patch-long (but at the ends)
        runs = np.diff(np.r_[0, hidden[2].int().numpy(), 0])
        starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)
        assert ((ends - starts) >= 4).sum() >= 1


def test_unknown_masking():
    with pytest.raises(ValueError, match="pretrain.masking"):
        pretraining.mask_steps(torch.tensor([3]), 4, 0.3, "block", 2, torch.Generator())


def test_pretraining_lowers_reconstruction_error():
    config = ModelConfig(arch="lstm", n_features=5, num_classes=5, spec_cardinalities=[3],
                         hidden_size=16, bidirectional=True)
    settings = pretraining.PretrainConfig(epochs=6, lr=5e-3, batch_size=32, device="cpu")
    encoder, history = pretraining.pretrain(config, settings, window_set(0, vehicles=200))
    assert history[-1] < history[0]
    assert set(encoder) == set(training.build_model(config).encoder.state_dict())


def test_frozen_encoder_epochs_then_unfrozen(tmp_path):
    model_config = ModelConfig(arch="lstm", n_features=5, num_classes=5, spec_cardinalities=[3],
                               hidden_size=8, head_hidden=8)
    encoder = {k: v.clone() for k, v in training.build_model(model_config).encoder
               .state_dict().items()}
    config = training.TrainConfig(epochs=2, batch_size=16, device="cpu", num_threads=1,
                                  monitor="loss", init="pretrained", freeze_epochs=1,
                                  min_steps=0)
    snapshots = []

    def remember(epoch, *_):
        snapshots.append(torch.load(tmp_path / "last.pt", weights_only=False)["model"])

    training.train(model_config, config, window_set(0), window_set(1), COST, tmp_path, "f",
                   on_epoch_end=remember, encoder_state=encoder)
    first, second = snapshots
    key = "encoder.lstm.weight_hh_l0"
    assert torch.equal(first[key], encoder["lstm.weight_hh_l0"])  # frozen in epoch 1
    assert not torch.equal(second[key], first[key])  # trained in epoch 2
    assert not torch.equal(first["head.0.weight"], second["head.0.weight"])
