"""Running a sequence model in torch: the device, CPU threads, logits of a window set."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from componentx.data.window_set import WindowSet
from componentx.devices import resolve_device
from componentx.sequence.dataset import prefetched_batches


def choose_device(name: str, rank: int = 0) -> torch.device:
    """The torch device of ``compute.device`` (:func:`~componentx.devices.resolve_device`)."""
    return torch.device(resolve_device(name, rank))


def set_cpu_threads(requested: int, world: int = 1) -> int:
    """Intra-op threads for the CPU, chosen once: ``requested``, or the cores shared out
    among the processes of a distributed run."""
    threads = requested or max((os.cpu_count() or 1) // world, 1)
    torch.set_num_threads(threads)
    return threads


@torch.no_grad()
def predict_logits(model: nn.Module, windows: WindowSet, device: torch.device,
                   batch_size: int = 2048, rows: range | None = None) -> np.ndarray:
    """Logits (windows, classes) as float32 of the windows ``rows`` (all by default), in
    order."""
    model.eval()
    outputs = []
    rows = range(len(windows)) if rows is None else rows
    chunks = (np.arange(start, min(start + batch_size, rows.stop))
              for start in range(rows.start, rows.stop, batch_size))
    for batch in prefetched_batches(windows, chunks, pin=device.type == "cuda"):
        batch = batch.to(device)
        outputs.append(model(batch.x, batch.lengths, batch.specs).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)
