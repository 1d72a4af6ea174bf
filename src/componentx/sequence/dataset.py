"""Windows as torch batches: each window's model inputs gathered from its bucket
(:class:`~componentx.data.window_set.WindowSet`), a batch at a time, in a background thread."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from componentx.data.window_set import WindowSet


@dataclass
class Batch:
    x: torch.Tensor  # (batch, window, features + 1): features and the age channel
    lengths: torch.Tensor  # (batch,)
    specs: torch.Tensor  # (batch, n_specs)
    y: torch.Tensor  # (batch,)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device, non_blocking=True), self.lengths,
                     self.specs.to(device, non_blocking=True), self.y.to(device, non_blocking=True))

    def pin_memory(self) -> Batch:
        """Page-locked copies, so the copy to a GPU can overlap with compute."""
        return Batch(self.x.pin_memory(), self.lengths, self.specs.pin_memory(),
                     self.y.pin_memory())


def batch_of(windows: WindowSet, index: np.ndarray) -> Batch:
    """The windows ``index`` as a :class:`Batch` (:meth:`WindowSet.fill`), without torch
    threads, so a background thread can gather while torch computes."""
    # torch's allocator aligns to 64 bytes; oneDNN and MKL may round differently on
    # buffers aligned otherwise, which would make runs differ from process to process.
    x = torch.zeros((len(index), windows.size, windows.n_inputs), dtype=torch.float32)
    windows.fill(index, x.numpy())
    return Batch(x, torch.from_numpy(windows.length[index]), torch.from_numpy(
        windows.specs[index]), torch.from_numpy(windows.labels[index]))


def prefetched_batches(windows: WindowSet, indices: Iterable[np.ndarray], pin: bool = False,
                       depth: int = 2) -> Iterator[Batch]:
    """The batches of ``indices`` in order, each gathered by a background thread while the
    caller trains on the one before (``pin``: in page-locked memory, for CUDA)."""

    def gather(index: np.ndarray) -> Batch:
        batch = batch_of(windows, index)
        return batch.pin_memory() if pin else batch

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="componentx-batches") as pool:
        pending: deque = deque()
        for index in indices:
            pending.append(pool.submit(gather, index))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
