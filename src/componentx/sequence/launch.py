"""The train stage's run: launched under torchrun when ``train.nproc`` > 1, resumed when its
fingerprint matches an unfinished ``last.pt``, started from the pre-trained encoder when
asked, and logged to dvclive and the trackers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from componentx.data.layout import DatasetSummary
from componentx.data.specs import cardinalities, train_vocabularies
from componentx.decisions.metrics import check_cost_matrix
from componentx.errors import ParamsError, UserError
from componentx.runtime import exit_with_parent, share_stage_lock
from componentx.sequence.checkpoints import load_checkpoint, resumable_checkpoint
from componentx.sequence.config import TrainConfig
from componentx.sequence.dataset import load_window_set
from componentx.sequence.models import ModelConfig
from componentx.sequence.training import TrainState, distributed_context, train
from componentx.tracking import EpochLog, run_name


def torchrun_command(nproc: int, script: str | Path) -> list[str] | None:
    """The command that runs ``script`` again under torchrun with ``nproc`` processes, or None
    when there is one process or this process already is one of torchrun's."""
    if nproc <= 1 or "LOCAL_RANK" in os.environ:
        return None
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", str(script)]


def relaunch(command: list[str]) -> int:
    """Run ``command`` (from :func:`torchrun_command`) and return its exit status. The
    workers share this stage's lock, and torchrun dies with this process (its workers, in a
    session of their own, die with torchrun)."""
    share_stage_lock()
    return subprocess.run(command, check=False, preexec_fn=exit_with_parent).returncode


def fingerprint(params: dict, inputs: list[Path]) -> str:
    """Hash of what the weights depend on: the params that shape training and the input
    files; an unfinished ``last.pt`` with the same fingerprint is resumed."""
    digest = hashlib.sha256()
    used = {k: v for k, v in params["train"].items() if k != "resume"}
    digest.update(json.dumps([used, params["model"], params["window"]["size"],
                              params["evaluate"]["cost_matrix"]], sort_keys=True).encode())
    for path in inputs:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def pretrained_encoder(path: Path, init: str, model_config: ModelConfig) -> dict | None:
    """The pre-trained encoder's weights for ``train.init: pretrained`` (None for scratch);
    it must have been pre-trained with the same model config."""
    if init == "scratch":
        return None
    checkpoint = load_checkpoint(path, required=("encoder",))
    if checkpoint["encoder"] is None:
        raise ParamsError("train.init is 'pretrained' but pretrain.epochs is 0: set "
                          "pretrain.epochs > 0 (dvc exp run -S pretrain.epochs=5)")

    def shape(config: dict) -> dict:
        return {k: v for k, v in config.items() if k != "spec_cardinalities"}

    if shape(checkpoint["config"]) != shape(model_config.to_dict()):
        raise UserError(f"{path} was pre-trained with another model config; re-run the "
                        "pretrain stage (dvc repro pretrain)")
    return checkpoint["encoder"]


def train_sequence_model(params: dict, ingested: Path, windows: Path, inputs: Path, stats: Path,
                         models: Path, live_dir: Path) -> TrainState:
    """Train on the windowing stage's train windows, early-stopped on validation, into
    ``models`` (``best.pt``, ``last.pt``, beside the pretrain stage's ``pretrained.pt``),
    with per-epoch metrics in ``live_dir``. Call it in every process of a distributed run
    (the process group initialised)."""
    config = TrainConfig(**params["train"])
    size = params["window"]["size"]
    summary = DatasetSummary.load(ingested / "schema.json")
    cost_matrix = check_cost_matrix(params["evaluate"]["cost_matrix"], summary.num_classes)
    specs = summary.spec_columns
    train_set = load_window_set(windows, inputs, ingested, "train", specs, size)
    val_set = load_window_set(windows, inputs, ingested, "validation", specs, size)
    model_config = ModelConfig(**params["model"], n_features=train_set.n_inputs,
                               num_classes=summary.num_classes,
                               spec_cardinalities=cardinalities(train_vocabularies(ingested,
                                                                                   specs)))
    pretrained = models / "pretrained.pt"
    encoder = pretrained_encoder(pretrained, config.init, model_config)
    key = fingerprint(params, [stats, ingested / "schema.json",
                               windows / "train_windows.parquet",
                               windows / "validation_windows.parquet",
                               *([pretrained] if config.init == "pretrained" else [])])
    resume_from = resumable_checkpoint(models / "last.pt", key) if config.resume else None
    name = run_name(summary.digest, size, model_config.arch, key)
    main_process = distributed_context()[0] == 0
    with EpochLog(live_dir, params["tracking"], name, key, resume_from is not None,
                  main_process) as epoch_log:
        epoch_log.start(params, {"train": params["train"], "model": params["model"],
                                 "window_size": size})
        state = train(model_config, config, train_set, val_set, cost_matrix, models, key,
                      resume_from, epoch_log.on_epoch_end, encoder)
        epoch_log.log_artifacts([models / "best.pt"], "checkpoints")
    return state


def process_group(device: str) -> None:
    """Join torchrun's process group: NCCL on GPUs, gloo on CPUs."""
    dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu"
                            else "gloo")
