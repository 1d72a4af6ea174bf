"""Windows as batches: each window's model inputs gathered from its bucket, per batch."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from componentx.data.features import AGE_SCALE, HISTORY_CHANNELS, FeatureStats
from componentx.data.layout import bucket_file
from componentx.data.specs import vehicle_codes
from componentx.data.windowing import buckets_of, read_window_index


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


class NpyRows:
    """A ``.npy`` file (rows first) read row range by row range with ``os.pread``: nothing is
    loaded or mapped whole, so a process's memory does not grow with the file (the page cache
    holds what is read often)."""

    def __init__(self, path: Path) -> None:
        with Path(path).open("rb") as handle:
            version = np.lib.format.read_magic(handle)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(handle) if version
                                     == (1, 0) else np.lib.format.read_array_header_2_0(handle))
            self.offset = handle.tell()
        if fortran:
            raise ValueError(f"{path}: a Fortran-ordered array cannot be read by rows")
        self.shape, self.dtype = shape, np.dtype(dtype)
        self.row_bytes = self.dtype.itemsize * int(np.prod(shape[1:], dtype=np.int64))
        self.fd = os.open(path, os.O_RDONLY)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        data = os.pread(self.fd, (stop - start) * self.row_bytes, self.offset
                        + start * self.row_bytes)
        return np.frombuffer(data, self.dtype).reshape(stop - start, *self.shape[1:])

    def __del__(self) -> None:
        if hasattr(self, "fd"):
            os.close(self.fd)


class WindowSet:
    """One split's windows over its model inputs, bucket by bucket.

    ``inputs[b]`` (rows, channels) and ``times[b]`` (rows,) are bucket ``b``'s model inputs
    and readout times: arrays, or :class:`NpyRows` files read window by window. ``windows``
    is the split's window index (``vehicle_id``, ``ref_time``, ``class_label``, ``bucket``
    (0 when absent), ``end_row``, ``length``), in its global order. :meth:`batch` gathers
    windows without torch threads, so a background thread can gather while torch computes.
    """

    def __init__(self, inputs: list, times: list, windows: pd.DataFrame, specs: np.ndarray,
                 size: int) -> None:
        self.inputs, self.times = inputs, times
        self.windows = windows
        self.bucket = (windows["bucket"].to_numpy() if "bucket" in windows
                       else np.zeros(len(windows), dtype=np.int64))
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
        """Channels per step: the model inputs and the age."""
        return self.inputs[0].shape[1] + 1

    def batch(self, index: np.ndarray) -> Batch:
        """The windows ``index``: (batch, size, n_inputs), left-padded with zeros, the last
        channel the age of each readout before the reference time."""
        # torch's allocator aligns to 64 bytes; oneDNN and MKL may round differently on
        # buffers aligned otherwise, which would make runs differ from process to process.
        x = torch.zeros((len(index), self.size, self.n_inputs), dtype=torch.float32)
        out = x.numpy()
        for i, window in enumerate(index):
            length, end, bucket = self.length[window], self.end_row[window], self.bucket[window]
            if length:
                rows = slice(end - length, end)
                out[i, self.size - length:, :-1] = self.inputs[bucket][rows]
                out[i, self.size - length:, -1] = (self.ref_time[window]
                                                   - self.times[bucket][rows]) / AGE_SCALE
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


def load_window_set(windows: Path, inputs: Path, ingested: Path, split: str,
                    spec_columns: list[str], size: int, specs_split: str | None = None
                    ) -> WindowSet:
    """One split's windows over the model inputs of the inputs stage (read from disk window by
    window); the specifications come from ``specs_split`` (the fleet holdout's vehicles are
    train vehicles)."""
    index = read_window_index(windows, split)
    buckets = range(buckets_of(windows))
    specs = vehicle_codes(ingested, specs_split or split, spec_columns,
                          index["vehicle_id"].to_numpy())
    return WindowSet([NpyRows(bucket_file(inputs, split, b, ".npy")) for b in buckets],
                     [NpyRows(Path(f"{bucket_file(windows, split, b, '')}.time.npy"))
                      for b in buckets], index, specs, size)
