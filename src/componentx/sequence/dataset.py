"""Model inputs: the normalised readouts as one contiguous tensor, windows gathered per batch."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from componentx.data.features import HISTORY_CHANNELS, FeatureStats, model_inputs, window_inputs
from componentx.data.specs import vehicle_codes


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


class WindowSet:
    """One split's windows over its normalised readouts.

    The readouts are normalised once into a float32 array with a zero padding row at the
    end; :meth:`batch` gathers a batch of windows with one numpy index operation (no torch
    threads, so a background thread can gather while torch computes).
    """

    def __init__(self, features: np.ndarray, times: np.ndarray, windows: pd.DataFrame,
                 specs: np.ndarray, size: int) -> None:
        self.features = np.asarray(features, dtype=np.float32)
        self.times = np.r_[times, 0.0]
        self.windows = windows
        self.end_row = windows["end_row"].to_numpy()
        self.length = windows["length"].to_numpy()
        self.ref_time = windows["ref_time"].to_numpy()
        self.labels = torch.tensor(windows["class_label"].to_numpy(), dtype=torch.long)
        self.specs = torch.tensor(specs, dtype=torch.long)
        self.size = size

    def __len__(self) -> int:
        return len(self.end_row)

    @property
    def n_inputs(self) -> int:
        return self.features.shape[1] + 1

    def batch(self, index: np.ndarray) -> Batch:
        # torch's allocator aligns to 64 bytes; oneDNN and MKL may round differently on
        # buffers aligned otherwise, which would make runs differ from process to process.
        x = torch.empty((len(index), self.size, self.n_inputs), dtype=torch.float32)
        window_inputs(self.features, self.times, self.end_row[index], self.length[index],
                      self.ref_time[index], self.size, out=x.numpy())
        return Batch(x, torch.from_numpy(self.length[index]), self.specs[index],
                     self.labels[index])


def prefetched_batches(windows: WindowSet, indices: Iterable[np.ndarray], pin: bool = False,
                       depth: int = 2) -> Iterator[Batch]:
    """The batches of ``indices`` in order, each gathered by a background thread while the
    caller trains on the one before (``pin``: in page-locked memory, for CUDA)."""

    def gather(index: np.ndarray) -> Batch:
        batch = windows.batch(index)
        return batch.pin_memory() if pin else batch

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="componentx-batches") as pool:
        pending: deque = deque()
        for index in indices:
            pending.append(pool.submit(gather, index))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def input_names(stats: FeatureStats) -> list[str]:
    """The model's input channels, in order."""
    return [*stats.names, *HISTORY_CHANNELS, "age"]


def load_window_set(windows_dir: Path, ingested_dir: Path, split: str, stats: FeatureStats,
                    spec_columns: list[str], size: int, specs_split: str | None = None
                    ) -> WindowSet:
    """Read one split's windowing outputs and normalise its readouts; the specifications come
    from ``specs_split`` (the fleet holdout's vehicles are train vehicles)."""
    values = np.load(windows_dir / f"{split}_values.npy", mmap_mode="r")
    times = np.load(windows_dir / f"{split}_time.npy")
    vehicles = np.load(windows_dir / f"{split}_vehicle.npy")
    features = model_inputs(values, times, vehicles, stats)
    windows = pd.read_parquet(windows_dir / f"{split}_windows.parquet")
    specs = vehicle_codes(ingested_dir, specs_split or split, spec_columns,
                          windows["vehicle_id"].to_numpy())
    return WindowSet(features, times, windows, specs, size)
