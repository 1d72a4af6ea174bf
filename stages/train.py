"""train: fit the sequence model; models/last.pt every epoch, models/best.pt at the best one.

An interrupted run resumes from models/last.pt when params and inputs are unchanged. With
train.nproc > 1 the stage re-launches itself under torchrun (DistributedDataParallel).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

from componentx import training
from componentx.dataset import load_window_set, spec_cardinalities
from componentx.features import FeatureStats
from componentx.metrics import check_cost_matrix
from componentx.models import ModelConfig
from componentx.params import load_params
from componentx.runtime import log, run_stage, section_config
from componentx.schema import DatasetSummary
from componentx.tracking import Tracker, run_name
from dvclive import Live

params = load_params()
TRAIN = section_config(training.TrainConfig, params, "train")
MODEL = params["model"]
WINDOW_SIZE = params["window"]["size"]
COST_MATRIX = params["evaluate"]["cost_matrix"]
TRACKING = params["tracking"]
INGESTED, WINDOWS, STATS = Path("data/ingested"), Path("data/windows"), Path("data/stats.json")
MODELS, LIVE_DIR = Path("models"), Path("dvclive/train")
PRETRAINED = MODELS / "pretrained.pt"


def fingerprint() -> str:
    """Hash of what the weights depend on: params and the train inputs."""
    digest = hashlib.sha256()
    used = {k: v for k, v in params["train"].items() if k != "resume"}
    digest.update(json.dumps([used, MODEL, WINDOW_SIZE, COST_MATRIX], sort_keys=True).encode())
    inputs = [STATS, INGESTED / "schema.json", WINDOWS / "train_windows.parquet",
              WINDOWS / "validation_windows.parquet"]
    for path in inputs + ([PRETRAINED] if TRAIN.init == "pretrained" else []):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def pretrained_encoder(model_config: ModelConfig) -> dict | None:
    if TRAIN.init == "scratch":
        return None
    if TRAIN.init != "pretrained":
        raise ValueError(f"train.init must be 'scratch' or 'pretrained', got {TRAIN.init!r}")
    checkpoint = training.load_checkpoint(PRETRAINED, required=("encoder",))
    if checkpoint["encoder"] is None:
        raise ValueError("train.init is 'pretrained' but pretrain.epochs is 0: set "
                         "pretrain.epochs > 0 (dvc exp run -S pretrain.epochs=5)")
    if {k: v for k, v in checkpoint["config"].items() if k != "spec_cardinalities"} != {
            k: v for k, v in model_config.to_dict().items() if k != "spec_cardinalities"}:
        raise ValueError(f"{PRETRAINED} was pre-trained with another model config; re-run "
                         "the pretrain stage (dvc repro pretrain)")
    return checkpoint["encoder"]


def main() -> None:
    if TRAIN.nproc > 1 and "LOCAL_RANK" not in os.environ:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   f"--nproc_per_node={TRAIN.nproc}", __file__]
        sys.exit(subprocess.run(command, check=False).returncode)
    if "LOCAL_RANK" in os.environ:
        dist.init_process_group("nccl" if torch.cuda.is_available() and TRAIN.device != "cpu"
                                else "gloo")
    try:
        run()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def run() -> None:
    summary = DatasetSummary.load(INGESTED / "schema.json")
    cost_matrix = check_cost_matrix(COST_MATRIX, summary.num_classes)
    stats = FeatureStats.load(STATS)
    specs = summary.spec_columns
    train_set = load_window_set(WINDOWS, INGESTED, "train", stats, specs, WINDOW_SIZE)
    val_set = load_window_set(WINDOWS, INGESTED, "validation", stats, specs, WINDOW_SIZE)
    log.info("train windows %d, validation windows %d, inputs %d", len(train_set), len(val_set),
             train_set.n_inputs)
    model_config = section_config(ModelConfig, params, "model", n_features=train_set.n_inputs,
                                  num_classes=summary.num_classes,
                                  spec_cardinalities=spec_cardinalities(INGESTED, specs))
    encoder = pretrained_encoder(model_config)
    key = fingerprint()
    resume_from = training.resumable_checkpoint(MODELS / "last.pt", key) if TRAIN.resume else None
    main_process = training.distributed_context()[0] == 0
    if resume_from is None and LIVE_DIR.exists() and main_process:
        shutil.rmtree(LIVE_DIR)
    live_context = Live(dir=str(LIVE_DIR), resume=resume_from is not None, dvcyaml=None,
                        save_dvc_exp=False) if main_process else nullcontext()
    name = run_name([INGESTED / "schema.json", INGESTED / "train_readouts.parquet"],
                    WINDOW_SIZE, model_config.arch, key)
    tracker = Tracker(TRACKING, name, key) if main_process else nullcontext()
    with live_context as live, tracker:
        if live is not None:
            live.log_params({"train": params["train"], "model": MODEL,
                             "window_size": WINDOW_SIZE})
            tracker.start(params, resume=resume_from is not None)

        def on_epoch_end(epoch: int, train_metrics: dict, val_metrics: dict, lr: float) -> None:
            live.step = epoch - 1
            for split, metrics in (("train", train_metrics), ("validation", val_metrics)):
                for metric, value in metrics.items():
                    live.log_metric(f"{split}/{metric}", value)
            live.log_metric("lr", lr)
            live.next_step()
            tracker.log_metrics({"train": train_metrics, "validation": val_metrics, "lr": lr},
                                step=epoch)

        state = training.train(model_config, TRAIN, train_set, val_set, cost_matrix, MODELS,
                               key, resume_from, on_epoch_end if live else None, encoder)
        if live is not None:
            tracker.log_artifacts([MODELS / "best.pt"], "checkpoints")
    if main_process:
        log.info("kept the model of epoch %d of %d (monitor and budget as logged at the start)",
                 state.best_epoch, state.epoch)


if __name__ == "__main__":
    run_stage(main)
