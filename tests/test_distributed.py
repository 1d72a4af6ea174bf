"""Two processes with DistributedDataParallel (gloo, CPU) train exactly like one: the same
weights, and the same training and validation metrics in the history."""

from __future__ import annotations

import dataclasses
import shutil
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


DROPOUT = model_config(hidden_size=8, head_hidden=8, dropout=0.3)
ODD = train_config(epochs=3, batch_size=15, lr=5e-3, device="cpu", num_threads=1,
                   monitor="loss", min_steps=0)  # shards of 8 and 7: ranks draw differently


def resumable_worker(rank: int, world: int, store: str, out: str, resume: str | None) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        folder = Path(out)

        def keep_epoch_one(epoch: int, *_: object) -> None:
            if epoch == 1:
                shutil.copy(folder / "last.pt", folder / "epoch1.pt")

        checkpoint = None if resume is None else torch.load(resume, weights_only=True)
        training.train(DROPOUT, ODD, window_set(0), window_set(1), COST, folder, "f",
                       resume_from=checkpoint, on_epoch_end=keep_epoch_one)
    finally:
        dist.destroy_process_group()


def test_two_processes_resume_exactly(tmp_path):
    """Every process's random state is in the checkpoint: a 2-process run resumed after its
    first epoch ends exactly as the uninterrupted one (dropout draws differ by rank)."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    mp.spawn(resumable_worker, args=(2, str(tmp_path / "a"), str(straight), None), nprocs=2)
    mp.spawn(resumable_worker, args=(2, str(tmp_path / "b"), str(resumed),
                                     str(straight / "epoch1.pt")), nprocs=2)
    one = torch.load(straight / "last.pt", weights_only=True)
    two = torch.load(resumed / "last.pt", weights_only=True)
    assert len(one["rng"]) == 2 and two["state"]["epoch"] == 3
    assert all(torch.equal(one["model"][k], two["model"][k]) for k in one["model"])


def sharing_worker(rank: int, world: int, store: str, out: str) -> None:
    """Each process: the validation logits of 7 windows and of 1 (the second process then
    scores none), and the windows it scored itself."""
    import numpy as np

    from componentx.sequence import inference

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        run_ = training.setup_run(MODEL, CONFIG, window_set(0).labels, None)
        scored = []
        real = inference.predict_logits

        def counted(*args, **kwargs):
            logits = real(*args, **kwargs)
            scored.append(len(logits))
            return logits

        training.predict_logits = counted
        windows = window_set(1, vehicles=7)
        seven = training.validation_logits(run_, windows)
        one = training.validation_logits(run_, window_set(1, vehicles=1))
        np.savez(f"{out}-{rank}.npz", seven=seven, one=one, scored=scored)
    finally:
        dist.destroy_process_group()


def test_each_process_validates_its_share_and_all_get_every_logit(tmp_path):
    import numpy as np

    from componentx.sequence.inference import predict_logits

    mp.spawn(sharing_worker, args=(2, str(tmp_path / "store"), str(tmp_path / "out")),
             nprocs=2)
    model = training.setup_run(MODEL, CONFIG, window_set(0).labels, None).model
    expected = {"seven": predict_logits(model, window_set(1, vehicles=7), torch.device("cpu")),
                "one": predict_logits(model, window_set(1, vehicles=1), torch.device("cpu"))}
    for rank, shares in ((0, [4, 1]), (1, [3, 0])):
        with np.load(tmp_path / f"out-{rank}.npz") as saved:
            assert saved["scored"].tolist() == shares
            for name, logits in expected.items():
                np.testing.assert_allclose(saved[name], logits, rtol=1e-6, atol=1e-6)
