"""Self-supervised pre-training of the sequence encoder by masked reconstruction of readouts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from componentx.data.layout import DatasetSummary
from componentx.data.specs import cardinalities, train_vocabularies
from componentx.data.window_set import WindowSet, load_window_set
from componentx.sequence.dataset import batch_of
from componentx.sequence.inference import choose_device
from componentx.sequence.models import (
    ModelConfig,
    build_model,
    left_to_right_aligned,
    to_patches,
)
from componentx.sequence.training import seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PretrainConfig:
    """``params.pretrain``, key for key, and the device (``compute.device``)."""

    epochs: int
    lr: float
    batch_size: int
    mask_ratio: float
    masking: str
    patch_size: int
    seed: int
    device: str


def mask_steps(lengths: torch.Tensor, window: int, ratio: float, masking: str, patch_size: int,
               generator: torch.Generator) -> torch.Tensor:
    """Steps to hide, (batch, window), among the real (right-aligned) steps; at least one each.

    ``random`` hides each step with probability ``ratio``; ``patch`` hides contiguous runs of
    ``patch_size`` steps covering about ``ratio`` of each sequence.
    """
    steps = torch.arange(window)[None, :]
    real = steps < lengths[:, None]
    if masking == "random":
        masked = (torch.rand(real.shape, generator=generator) < ratio) & real
    else:
        n_patches = torch.clamp(torch.ceil(ratio * lengths / patch_size), min=1).long()
        most = int(n_patches.max())
        room = torch.clamp(lengths - patch_size + 1, min=1)
        starts = (torch.rand((len(lengths), most), generator=generator) * room[:, None]).long()
        starts = torch.where(torch.arange(most)[None, :] < n_patches[:, None], starts, window)
        offset = steps[:, :, None] - starts[:, None, :]
        masked = ((offset >= 0) & (offset < patch_size)).any(dim=2) & real
    one = (torch.rand(len(lengths), generator=generator) * lengths).long()
    masked[torch.arange(len(lengths)), one] = True
    return masked


class Reconstructor(nn.Module):
    """The classifier's encoder plus a linear decoder back to the readout features (of every
    readout of an encoder step's patch)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.encoder = build_model(config).encoder
        self.decoder = nn.Linear(self.encoder.out_features,
                                 config.patch * (config.n_features - 1))

    def forward(self, aligned: torch.Tensor, lengths: torch.Tensor, real: torch.Tensor
                ) -> torch.Tensor:
        return self.decoder(self.encoder(aligned, lengths, real))


def pretrain(model_config: ModelConfig, config: PretrainConfig, windows: WindowSet
             ) -> tuple[dict[str, torch.Tensor], list[float]]:
    """Train the encoder to fill in hidden readouts; returns its weights and the loss per epoch.

    Hidden steps keep their age channel (the model knows when a readout is missing) and lose
    every feature; the loss is the mean squared error on the hidden steps' features. Where the
    encoder reads patches of readouts (``model_config.patch`` > 1), a step is a patch.
    """
    device = choose_device(config.device)
    seed_everything(config.seed)
    model = Reconstructor(model_config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    for epoch in range(config.epochs):
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(len(windows))
        total, count = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = batch_of(windows, order[start:start + config.batch_size])
            x, lengths = to_patches(batch.x, batch.lengths, model_config.patch)
            aligned = left_to_right_aligned(x, lengths)
            window = aligned.shape[1]
            real = torch.arange(window)[None, :] < lengths[:, None]
            hidden = mask_steps(lengths, window, config.mask_ratio, config.masking,
                                config.patch_size, generator)
            # (batch, steps, readouts per step, inputs)
            readouts = aligned.unflatten(2, (model_config.patch, -1))
            inputs = readouts.clone()
            inputs[..., :-1] = inputs[..., :-1].masked_fill(hidden[:, :, None, None], 0.0)
            reconstruction = model(inputs.flatten(2).to(device), lengths, real.to(device))
            error = (reconstruction - readouts[..., :-1].flatten(2).to(device)) ** 2
            loss = error[hidden.to(device)].mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            total += loss.item() * int(hidden.sum())
            count += int(hidden.sum())
        history.append(total / max(count, 1))
        log.info("pretrain epoch %d/%d  masked reconstruction MSE %.4f", epoch + 1,
                 config.epochs, history[-1])
    return {k: v.cpu() for k, v in model.encoder.state_dict().items()}, history


def pretrain_stage(params: dict, ingested: Path, windows: Path, inputs: Path) -> dict:
    """The pretrain stage's checkpoint: the encoder pre-trained on the train windows with
    ``params.pretrain`` and ``params.model``, or, with ``pretrain.epochs`` 0, a record that
    there is none (``train.init: pretrained`` then refuses to start)."""
    config = PretrainConfig(**params["pretrain"], device=params["compute"]["device"])
    if config.epochs == 0:
        log.info("pretrain.epochs is 0: no pre-training")
        return {"config": None, "encoder": None, "history": []}
    summary = DatasetSummary.load(ingested / "schema.json")
    train_windows = load_window_set(windows, inputs, ingested, "train", summary.spec_columns,
                                    params["window"]["size"])
    model_config = ModelConfig(**params["model"], n_features=train_windows.n_inputs,
                               window=params["window"]["size"],
                               num_classes=summary.num_classes,
                               spec_cardinalities=cardinalities(train_vocabularies(
                                   ingested, summary.spec_columns)))
    encoder, history = pretrain(model_config, config, train_windows)
    return {"config": model_config.to_dict(), "encoder": encoder, "history": history}
