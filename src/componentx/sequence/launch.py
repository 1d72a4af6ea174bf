"""The train stage's run: launched under torchrun when ``train.nproc`` > 1, resumed when its
fingerprint matches an unfinished ``last.pt``, started from the pre-trained encoder when
asked, and logged to dvclive and the trackers."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from componentx.data.layout import DatasetSummary
from componentx.data.specs import cardinalities, train_vocabularies
from componentx.data.window_set import WindowSet, load_window_set
from componentx.decisions.metrics import check_cost_matrix
from componentx.decisions.selection import Selection, plan_selection
from componentx.errors import ParamsError, UserError
from componentx.runtime import atomic_write_bytes, exit_with_parent, share_stage_lock
from componentx.sequence.checkpoints import load_checkpoint, load_model, resumable_checkpoint
from componentx.sequence.config import TrainConfig, fit_budget
from componentx.sequence.inference import predict_logits
from componentx.sequence.models import ModelConfig
from componentx.sequence.training import TrainState, distributed_context, train
from componentx.tracking import EpochLog, run_name

log = logging.getLogger(__name__)


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
                              params["evaluate"]["cost_matrix"], params["selection"]],
                             sort_keys=True).encode())
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
    """Train into ``models`` (``best.pt``, ``last.pt``, beside the pretrain stage's
    ``pretrained.pt``), with per-epoch metrics in ``live_dir``, and write the logits of the
    selection windows (:mod:`componentx.decisions.selection`) to ``selection.npz``: on
    validation, the model early-stopped on it; cross-validated, out-of-fold logits of models
    trained fold by fold (in ``folds/``, resumed like the run, removed at the end), then the
    model refitted on train and validation. Call it in every process of a distributed run
    (the process group initialised)."""
    config = TrainConfig(**params["train"])
    size = params["window"]["size"]
    summary = DatasetSummary.load(ingested / "schema.json")
    cost_matrix = check_cost_matrix(params["evaluate"]["cost_matrix"], summary.num_classes)
    specs = summary.spec_columns
    selection = plan_selection(windows, params["selection"])
    fit_set = load_window_set(windows, inputs, ingested, ("train", "validation")
                              if selection.cross_validated else "train", specs, size)
    model_config = ModelConfig(**params["model"], n_features=fit_set.n_inputs,
                               window=params["window"]["size"],
                               num_classes=summary.num_classes,
                               spec_cardinalities=cardinalities(train_vocabularies(ingested,
                                                                                   specs)))
    pretrained = models / "pretrained.pt"
    encoder = pretrained_encoder(pretrained, config.init, model_config)
    key = fingerprint(params, [stats, ingested / "schema.json",
                               windows / "train_windows.parquet",
                               windows / "validation_windows.parquet",
                               *([pretrained] if config.init == "pretrained" else [])])
    main_process = distributed_context()[0] == 0
    if selection.cross_validated:
        logits, config = cross_validate(model_config, config, fit_set, selection, cost_matrix,
                                        models / "folds", key, encoder)
        val_set = None
    else:
        val_set = load_window_set(windows, inputs, ingested, "validation", specs, size)
    resume_from = resumable_checkpoint(models / "last.pt", key) if config.resume else None
    name = run_name(summary.digest, size, model_config.arch, key)
    with EpochLog(live_dir, params["tracking"], name, key, resume_from is not None,
                  main_process) as epoch_log:
        epoch_log.start(params, {"train": params["train"], "model": params["model"],
                                 "window_size": size})
        state = train(model_config, config, fit_set, val_set, cost_matrix, models, key,
                      resume_from, epoch_log.on_epoch_end, encoder)
        epoch_log.log_artifacts([models / "best.pt"], "checkpoints")
    if val_set is not None:
        logits = best_logits(models / "best.pt", val_set)
    if main_process:
        atomic_write_bytes(models / SELECTION_LOGITS, selection_npz(logits, selection))
        shutil.rmtree(models / "folds", ignore_errors=True)
    return state


SELECTION_LOGITS = "selection.npz"


def selection_npz(logits: np.ndarray | None, selection: Selection) -> bytes:
    """``selection.npz``: the selection windows' logits and vehicles (float64, int64)."""
    buffer = io.BytesIO()
    np.savez(buffer, logits=np.asarray(logits, dtype=np.float64),
             vehicle_id=selection.vehicles.astype(np.int64))
    return buffer.getvalue()


def best_logits(path: Path, windows: WindowSet) -> np.ndarray | None:
    """The logits of ``windows`` by the model in ``path`` (in the main process; None in the
    others, which wait for it)."""
    if distributed_context()[0] != 0:
        dist.barrier()
        return None
    model, _ = load_model(path)
    logits = predict_logits(model, windows, torch.device("cpu"))
    if dist.is_initialized():
        dist.barrier()
    return logits


def cross_validate(model_config: ModelConfig, config: TrainConfig, fit_set: WindowSet,
                   selection: Selection, cost_matrix: np.ndarray, folds: Path, key: str,
                   encoder: dict | None) -> tuple[np.ndarray | None, TrainConfig]:
    """Out-of-fold logits of the selection windows (``fit_set``), each fold predicted by a
    model trained on the others into ``folds/{fold}`` (an interrupted fold resumes, a
    finished one is kept); and the config of the refit on all of them: the same budget rule
    (the last epoch kept), or, when the folds watched a monitor (an explicit
    ``train.monitor``, or ``auto`` with enough windows), their mean best epoch."""
    logits = np.zeros((len(fit_set), model_config.num_classes))
    best_epochs = []
    for number, fitted_on, held in selection.split_folds():
        folder = folds / str(number)
        fold_key = f"{key}-fold{number}-of-{selection.folds}"
        done = _finished_fold(folder, fold_key)
        if done is None:
            log.info("fold %d/%d: training on %d windows, predicting %d", number + 1,
                     selection.folds, len(fitted_on), len(held))
            resume_from = resumable_checkpoint(folder / "last.pt", fold_key) \
                if config.resume else None
            done = train(model_config, config, fit_set.subset(fitted_on),
                         fit_set.subset(held), cost_matrix, folder, fold_key, resume_from,
                         None, encoder)
        best_epochs.append(done.stopping.best_epoch)
        fold_logits = best_logits(folder / "best.pt", fit_set.subset(held))
        if fold_logits is not None:
            logits[held] = fold_logits
    monitored = any(fit_budget(config, len(fitted_on), len(held)).monitor != "none"
                    for _, fitted_on, held in selection.split_folds())
    refit = replace(config, monitor="none")
    if monitored:
        refit = replace(refit, min_steps=0, epochs=max(1, round(float(np.mean(best_epochs)))))
    return logits, refit


def _finished_fold(folder: Path, key: str) -> TrainState | None:
    """The state of a fold that finished with these params and inputs, else None."""
    path = folder / "last.pt"
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.get("fingerprint") != key or not checkpoint["state"].get("finished"):
        return None
    return TrainState.from_dict(checkpoint["state"])


def process_group(device: str) -> None:
    """Join torchrun's process group: NCCL on GPUs, gloo on CPUs."""
    dist.init_process_group("nccl" if torch.cuda.is_available() and device != "cpu"
                            else "gloo")
