"""Two processes with DistributedDataParallel (gloo, CPU) train exactly like one: the same
weights, and the same training and validation metrics in the history."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import COST, model_config, train_config, window_set

from componentx.sequence import training
from componentx.sequence.config import TrainConfig

MODEL = model_config(hidden_size=8, head_hidden=8, dropout=0.0)
CONFIG = train_config(epochs=2, batch_size=16, lr=5e-3, device="cpu", num_threads=1,
                      monitor="loss", class_weights="inverse", min_steps=0)
FROZEN = dataclasses.replace(CONFIG, init="pretrained", freeze_epochs=1)


def encoder_state(config: TrainConfig) -> dict | None:
    if config.init != "pretrained":
        return None
    torch.manual_seed(123)
    return training.build_model(MODEL).encoder.state_dict()


def run(config: TrainConfig, out: Path) -> training.TrainState:
    return training.train(MODEL, config, window_set(0), window_set(1), COST, out, "f",
                          encoder_state=encoder_state(config))


def worker(rank: int, world: int, store: str, out: str, config: TrainConfig) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        run(config, Path(out))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("config", [CONFIG, FROZEN], ids=["scratch", "pretrained-frozen"])
def test_two_processes_match_one(tmp_path, config):
    single = run(config, tmp_path / "one")
    mp.spawn(worker, args=(2, str(tmp_path / "store"), str(tmp_path / "two"), config), nprocs=2)
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=True)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=True)
    for name, tensor in one["model"].items():
        assert torch.allclose(tensor, two["model"][name], atol=1e-5), name
    history = two["state"]["history"]
    for split in ("train", "validation"):
        for metric in single.history[0][split]:
            assert [h[split][metric] for h in history] == pytest.approx(
                [h[split][metric] for h in single.history], rel=1e-5), (split, metric)
