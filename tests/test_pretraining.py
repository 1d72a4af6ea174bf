"""Masked reconstruction pre-training and fine-tuning with a frozen encoder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import COST, PARAMS, model_config, train_config, window_set

from componentx.params import MASKINGS
from componentx.sequence import pretraining, training


@pytest.mark.parametrize("masking", MASKINGS)
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


def test_pretraining_lowers_reconstruction_error():
    config = model_config(hidden_size=16, bidirectional=True)
    settings = pretraining.PretrainConfig(**{**PARAMS["pretrain"], "epochs": 6, "lr": 5e-3,
                                             "batch_size": 32}, device="cpu")
    encoder, history = pretraining.pretrain(config, settings, window_set(0, vehicles=200))
    assert history[-1] < history[0]
    assert set(encoder) == set(training.build_model(config).encoder.state_dict())


def test_frozen_encoder_epochs_then_unfrozen(tmp_path):
    model = model_config(hidden_size=8, head_hidden=8)
    encoder = {k: v.clone() for k, v in training.build_model(model).encoder
               .state_dict().items()}
    config = train_config(epochs=2, batch_size=16, device="cpu", num_threads=1,
                          monitor="loss", init="pretrained", freeze_epochs=1, min_steps=0)
    snapshots = []

    def remember(epoch, *_):
        snapshots.append(torch.load(tmp_path / "last.pt", weights_only=True)["model"])

    training.train(model, config, window_set(0), window_set(1), COST, tmp_path, "f",
                   on_epoch_end=remember, encoder_state=encoder)
    first, second = snapshots
    key = "encoder.lstm.weight_hh_l0"
    assert torch.equal(first[key], encoder["lstm.weight_hh_l0"])  # frozen in epoch 1
    assert not torch.equal(second[key], first[key])  # trained in epoch 2
    assert not torch.equal(first["head.0.weight"], second["head.0.weight"])
