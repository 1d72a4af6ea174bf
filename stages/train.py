"""train: fit the sequence model; models/last.pt every epoch, models/best.pt at the best one,
and models/selection.npz, the logits of the selection windows (validation, or out-of-fold when
cross-validated: then the model is refitted on train and validation).

An interrupted run resumes from models/last.pt when params and inputs are unchanged. With
train.nproc > 1 the stage re-launches itself under torchrun (DistributedDataParallel).
"""

import os
import sys
from pathlib import Path

import torch.distributed as dist

from componentx.params import load_params
from componentx.runtime import log, run_stage
from componentx.sequence.launch import (
    process_group,
    relaunch,
    torchrun_command,
    train_sequence_model,
)

INGESTED, WINDOWS, INPUTS = Path("data/ingested"), Path("data/windows"), Path("data/inputs")
STATS = Path("data/stats.json")
MODELS, LIVE_DIR = Path("models"), Path("dvclive/train")


def main() -> None:
    params = load_params()
    command = torchrun_command(params["train"]["nproc"], __file__)
    if command is not None:
        sys.exit(relaunch(command))
    if "LOCAL_RANK" in os.environ:
        process_group(params["train"]["device"])
    try:
        state = train_sequence_model(params, INGESTED, WINDOWS, INPUTS, STATS, MODELS, LIVE_DIR)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    log.info("kept the model of epoch %d of %d (monitor and budget as logged at the start)",
             state.stopping.best_epoch, state.epoch)


if __name__ == "__main__":
    run_stage(main, "train")
