"""Running a sequence model: the device, chosen once, CPU threads, logits of windows, and the
evaluation of a checkpoint on validation and test."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from componentx.data.layout import DatasetSummary
from componentx.data.window_set import WindowSet, load_window_set
from componentx.decisions.calibration import calibration_method
from componentx.decisions.evaluation import Evaluation, evaluate_logits
from componentx.decisions.metrics import check_cost_matrix
from componentx.decisions.selection import Selection
from componentx.errors import ParamsError, UserError
from componentx.sequence.checkpoints import load_model
from componentx.sequence.dataset import prefetched_batches


def choose_device(name: str, rank: int = 0) -> torch.device:
    """The device (``train.device``): ``auto`` takes CUDA when available; under several
    processes each rank takes its own GPU."""
    if name == "auto":
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}"
                            if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ParamsError(f"train.device={name!r} but CUDA is not available")
    return torch.device(name)


def set_cpu_threads(requested: int, world: int = 1) -> int:
    """Intra-op threads for the CPU, chosen once: ``requested``, or the cores shared out
    among the processes of a distributed run."""
    threads = requested or max((os.cpu_count() or 1) // world, 1)
    torch.set_num_threads(threads)
    return threads


@torch.no_grad()
def predict_logits(model: nn.Module, windows: WindowSet, device: torch.device,
                   batch_size: int = 2048) -> np.ndarray:
    """Logits (windows, classes) as float32, in the windows' order."""
    model.eval()
    outputs = []
    chunks = (np.arange(start, min(start + batch_size, len(windows)))
              for start in range(0, len(windows), batch_size))
    for batch in prefetched_batches(windows, chunks, pin=device.type == "cuda"):
        batch = batch.to(device)
        outputs.append(model(batch.x, batch.lengths, batch.specs).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def evaluate_checkpoint(model_path: Path, selection_logits: Path, selection: Selection,
                        ingested: Path, windows: Path, inputs: Path, size: int, settings: dict
                        ) -> tuple[Evaluation, dict]:
    """The train stage's model: calibrated on the logits of the selection windows it wrote
    (``selection_logits``, ``selection.npz``: of the validation windows, or out-of-fold), and
    scored there and on the test windows (``settings`` is ``params.evaluate``); also returns
    the checkpoint."""
    summary = DatasetSummary.load(ingested / "schema.json")
    cost_matrix = check_cost_matrix(settings["cost_matrix"], summary.num_classes)
    with np.load(selection_logits, allow_pickle=False) as saved:
        logits, vehicles = saved["logits"], saved["vehicle_id"]
    if not np.array_equal(vehicles, selection.vehicles):
        raise UserError(f"{selection_logits} holds other windows than the {selection.mode} "
                        "selection of these params: train again (dvc repro train)")
    device = choose_device("auto")
    model, checkpoint = load_model(model_path, device)
    test = load_window_set(windows, inputs, ingested, "test", summary.spec_columns, size)
    trained = checkpoint["train_config"]
    method = calibration_method(settings["calibration"], trained["loss"],
                                trained["label_smoothing"])
    evaluation = evaluate_logits(
        {"validation": logits, "test": predict_logits(model, test, device).astype(np.float64)},
        {"validation": selection.labels, "test": test.labels},
        {"validation": selection.vehicles, "test": test.windows["vehicle_id"].to_numpy()},
        np.asarray(checkpoint["train_priors"]), cost_matrix, settings, method,
        selection.deployment_labels)
    evaluation.report["selection"] = selection.to_dict()
    return evaluation, checkpoint
