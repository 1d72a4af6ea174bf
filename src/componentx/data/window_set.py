"""Windows over the inputs stage's model inputs, gathered window by window from disk.

A :class:`WindowSet` is what every model is fitted and scored on: the sequence models (as
torch batches, :mod:`componentx.sequence.dataset`) and the kernel transforms
(:mod:`componentx.rocket`). It needs numpy only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from componentx.data.features import AGE_SCALE, HISTORY_CHANNELS, FeatureStats
from componentx.data.layout import bucket_file
from componentx.data.specs import vehicle_codes
from componentx.data.windowing import buckets_of, read_window_index


class NpyRows:
    """A ``.npy`` file (rows first) read row range by row range with ``os.pread``: nothing is
    loaded or mapped whole, so a process's memory does not grow with the file (the page cache
    holds what is read often). The file is opened for each read (about a microsecond), so a
    window set of any number of buckets holds no file open."""

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
        self.path = Path(path)

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        fd = os.open(self.path, os.O_RDONLY)
        try:
            data = os.pread(fd, (stop - start) * self.row_bytes, self.offset
                            + start * self.row_bytes)
        finally:
            os.close(fd)
        return np.frombuffer(data, self.dtype).reshape(stop - start, *self.shape[1:])


def write_npy_header(handle: BinaryIO, rows: int, row_shape: tuple[int, ...],
                     dtype: np.dtype) -> None:
    """The header of a ``.npy`` file of ``rows`` rows of ``row_shape`` and ``dtype``, into
    ``handle``: the rows' bytes follow, in order, as the caller writes them."""
    np.lib.format.write_array_header_1_0(handle, {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
        "shape": (rows, *row_shape)})


SPILL_BYTES = 256 * 2**20  # rows kept in memory up to this size, beyond it on disk


@contextmanager
def spilled_rows(path: Path, rows: int, chunks: Iterable[np.ndarray],
                 spill_bytes: int = SPILL_BYTES) -> Iterator[np.ndarray | NpyRows]:
    """Row chunks (each (rows_in_chunk, ...), of one dtype and row shape), ``rows`` rows in
    all, as one array: in memory where it takes at most ``spill_bytes``, else written one
    chunk after the other into a ``.npy`` file at ``path``, yielded as :class:`NpyRows`
    (read a range of rows at a time) and deleted afterwards. Its memory is the smaller of the
    array and a chunk, whatever the rows."""
    out, written, handle = None, 0, None
    try:
        for chunk in chunks:
            if written == 0 and rows * chunk.dtype.itemsize * math.prod(chunk.shape[1:]
                                                                        ) <= spill_bytes:
                out = np.empty((rows, *chunk.shape[1:]), dtype=chunk.dtype)
            elif written == 0:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                handle = Path(path).open("wb")
                write_npy_header(handle, rows, chunk.shape[1:], chunk.dtype)
                dtype = chunk.dtype
            if written + len(chunk) > rows:
                break
            if out is not None:
                out[written:written + len(chunk)] = chunk
            else:
                handle.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
            written += len(chunk)
        if written != rows or rows == 0:
            raise ValueError(f"{path}: more or fewer rows than the {rows} announced")
        if out is not None:
            yield out
        else:
            handle.close()
            yield NpyRows(path)
    finally:
        if handle is not None:
            handle.close()
            Path(path).unlink(missing_ok=True)


class WindowSet:
    """Windows over model inputs, in a fixed order.

    ``inputs[s]`` (rows, channels) and ``times[s]`` (rows,) are the model inputs and readout
    times of source ``s`` (a bucket of a split): arrays, or :class:`NpyRows` files read window
    by window. ``windows`` is the window index (``vehicle_id``, ``ref_time``, ``class_label``,
    ``bucket``: the source, 0 when absent, ``end_row``, ``length``), one row per window;
    ``specs`` (windows, n_specs) the specification codes; ``size`` the window length.
    """

    def __init__(self, inputs: list, times: list, windows: pd.DataFrame, specs: np.ndarray,
                 size: int) -> None:
        self.inputs, self.times = inputs, times
        self.windows = windows.reset_index(drop=True)
        self.bucket = (self.windows["bucket"].to_numpy() if "bucket" in self.windows
                       else np.zeros(len(self.windows), dtype=np.int64))
        self.end_row = self.windows["end_row"].to_numpy()
        self.length = self.windows["length"].to_numpy()
        self.ref_time = self.windows["ref_time"].to_numpy()
        self.labels = self.windows["class_label"].to_numpy().astype(np.int64)
        self.specs = np.asarray(specs, dtype=np.int64)
        self.size = size

    def __len__(self) -> int:
        return len(self.end_row)

    @property
    def n_inputs(self) -> int:
        """Channels per step: the model inputs and the age."""
        return self.inputs[0].shape[1] + 1

    def subset(self, rows: np.ndarray) -> WindowSet:
        """The windows ``rows`` (positions or a boolean mask), in that order, over the same
        inputs."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return WindowSet(self.inputs, self.times, self.windows.iloc[rows], self.specs[rows],
                         self.size)

    def fill(self, index: np.ndarray, out: np.ndarray) -> None:
        """Write the windows ``index`` into ``out`` (len(index), size, n_inputs), which holds
        zeros: left-padded, the last channel the age of each readout before the reference
        time."""
        for i, window in enumerate(index):
            length, end, bucket = self.length[window], self.end_row[window], self.bucket[window]
            if length:
                rows = slice(end - length, end)
                out[i, self.size - length:, :-1] = self.inputs[bucket][rows]
                out[i, self.size - length:, -1] = (self.ref_time[window]
                                                   - self.times[bucket][rows]) / AGE_SCALE

    def arrays(self, index: np.ndarray) -> np.ndarray:
        """The windows ``index`` as one float32 array (len(index), size, n_inputs)."""
        out = np.zeros((len(index), self.size, self.n_inputs), dtype=np.float32)
        self.fill(index, out)
        return out


def input_names(stats: FeatureStats) -> list[str]:
    """The model's input channels, in order."""
    return [*stats.names, *HISTORY_CHANNELS, "age"]


def load_window_set(windows: Path, inputs: Path, ingested: Path, splits: str | Sequence[str],
                    spec_columns: list[str], size: int, specs_split: str | None = None
                    ) -> WindowSet:
    """The windows of one split, or of several one after the other, over the model inputs of
    the inputs stage (read from disk window by window); the specifications come from
    ``specs_split`` (the fleet holdout's vehicles are train vehicles)."""
    splits = [splits] if isinstance(splits, str) else list(splits)
    buckets = buckets_of(windows)
    sources, times, indexes, specs = [], [], [], []
    for number, split in enumerate(splits):
        index = read_window_index(windows, split)
        if "bucket" in index:
            index = index.assign(bucket=index["bucket"] + number * buckets)
        indexes.append(index)
        specs.append(vehicle_codes(ingested, specs_split or split, spec_columns,
                                   index["vehicle_id"].to_numpy()))
        sources += [NpyRows(bucket_file(inputs, split, b, ".npy")) for b in range(buckets)]
        times += [NpyRows(Path(f"{bucket_file(windows, split, b, '')}.time.npy"))
                  for b in range(buckets)]
    return WindowSet(sources, times, pd.concat(indexes, ignore_index=True),
                     np.concatenate(specs), size)
