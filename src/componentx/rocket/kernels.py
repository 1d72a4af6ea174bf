"""MiniRocket over windows of any length (sktime's multivariate, unequal-length MiniRocket).

Only the real steps of each window are transformed: a window's left padding is cut off, so
it is never read as signal, and the transform sees each window at its true length. The
transform needs at least :data:`MIN_LENGTH` steps; a shorter window is extended backwards by
repeating its first readout (a flat history: no jump that the kernels would read as a
pattern), and an empty window is all zeros.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from componentx.candidates.interface import Windows
from componentx.data.features import HISTORY_CHANNELS, FeatureStats, window_input_batches
from componentx.errors import BundleError

MIN_LENGTH = 9  # steps MiniRocket's kernels (length 9) need
CHUNK = 4096  # windows transformed at a time
CHANNELS = {"readouts": "its readouts, its history and age beside",  # params.KERNEL_CHANNELS
            "inputs": "every model input"}


@dataclass
class Kernels:
    """A fitted transform: sktime's five parameter arrays (channels per combination, channel
    indices, dilations, features per dilation, biases)."""

    parameters: tuple[np.ndarray, ...]

    @property
    def n_features(self) -> int:
        return len(self.parameters[4])

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f"kernels_{i}": array for i, array in enumerate(self.parameters)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Kernels:
        dtypes = (np.int32, np.int32, np.int32, np.int32, np.float32)
        return cls(tuple(np.ascontiguousarray(arrays[f"kernels_{i}"], dtype=dtype)
                         for i, dtype in enumerate(dtypes)))


def window_score_chunks(windows: Windows, stats: FeatureStats, size: int, chunk: int,
                        score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
                        ) -> Iterator[np.ndarray]:
    """``score(x, lengths, specs)`` (windows in x, columns) of the windows' model inputs
    (:func:`~componentx.data.features.window_input_batches`), ``chunk`` windows at a time, in
    order."""
    readouts = windows.readouts
    for start, x in zip(range(0, len(windows), chunk), window_input_batches(
            readouts.values, readouts.times, readouts.vehicles, windows.end_row,
            windows.length, windows.ref_time, stats, size, chunk), strict=True):
        yield score(x, windows.length[start:start + chunk], windows.specs[start:start + chunk])


def window_scores(windows: Windows, stats: FeatureStats, size: int, chunk: int,
                  score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                  classes: int) -> np.ndarray:
    """:func:`window_score_chunks` as one array (windows, classes)."""
    parts = list(window_score_chunks(windows, stats, size, chunk, score))
    return np.concatenate(parts) if parts else np.zeros((0, classes))


def split_inputs(x: np.ndarray, channels: str, readouts: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """What a kernel candidate reads of model-input windows ``x`` (windows, size, inputs + 1)
    (:func:`~componentx.data.features.window_inputs`): the channels its kernels convolve
    (windows, size, c) and the numbers set beside their features (windows, e).

    ``channels`` is ``readouts``: the first ``readouts`` channels (the readouts in the
    transform's first form: as they are, counters as signed log1p; the kernels take their
    own differences), and beside them the history channels and the age at each window's last
    step (three numbers: zeros for an empty window). Or ``inputs``: every channel, as the
    sequence model reads them, and nothing beside. The history and age are smooth ramps:
    convolved, they only dilute the signal (the README's small tasks).
    """
    if channels == "inputs":
        return x, np.zeros((len(x), 0), dtype=np.float32)
    return x[:, :, :readouts], np.ascontiguousarray(
        x[:, -1, -(len(HISTORY_CHANNELS) + 1):], dtype=np.float32)


def read_saved(folder: Path, meta: str, arrays: str, what: str, engine: str
               ) -> tuple[dict, dict[str, np.ndarray]]:
    """A saved kernel model's ``meta`` (JSON) and ``arrays`` (npz read as plain arrays,
    ``allow_pickle=False``): a file that holds anything else, or an ``engine`` other than
    auto, is refused (:class:`~componentx.errors.BundleError`)."""
    if engine != "auto":
        raise BundleError(f"{folder} is a {what} model (numpy): --engine {engine} does not "
                          "apply (use auto)")
    try:
        with np.load(Path(folder) / arrays, allow_pickle=False) as saved:
            return (json.loads((Path(folder) / meta).read_text()),
                    {name: saved[name] for name in saved.files})
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BundleError(f"{folder}: the {what} model cannot be read ({error})") from None


def real_steps(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The real steps of left-padded windows ``x`` (windows, size, channels) with ``lengths``
    real steps each, one window after the other: (channels, total steps) float32, and each
    window's steps (windows,) int32, at least :data:`MIN_LENGTH` (see the module)."""
    n, size, _ = x.shape
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), size)
    steps = np.maximum(lengths, MIN_LENGTH)
    window = np.repeat(np.arange(n), steps)
    step = np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)
    # step j of a window reads its real step max(j - extension, 0), found at padded position
    # size - length + that (an empty window reads its padding: zeros)
    real = np.maximum(step - np.repeat(steps - lengths, steps), 0)
    position = np.minimum(size - np.repeat(lengths, steps) + real, size - 1)
    return np.ascontiguousarray(x[window, position].T, dtype=np.float32), steps.astype(np.int32)


def fit_kernels(x: np.ndarray, lengths: np.ndarray, kernels: int, seed: int) -> Kernels:
    """Fit MiniRocket (dilations up to the longest window, biases from quantiles of the
    convolutions of ``x``'s windows) with ``kernels`` features (rounded down to a multiple of
    84) on left-padded windows ``x`` (windows, size, channels)."""
    from sktime.transformations.rocket._minirocket_multi_var_numba import _fit_multi_var

    values, steps = real_steps(x, lengths)
    return Kernels(_fit_multi_var(values, L=steps, reference_length=int(steps.max()),
                                  num_features=kernels, max_dilations_per_kernel=32,
                                  seed=np.int32(seed)))


def transform(kernels: Kernels, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """MiniRocket features (windows, kernels.n_features) float32 of left-padded windows
    ``x`` (windows, size, channels), :data:`CHUNK` windows at a time."""
    from sktime.transformations.rocket._minirocket_multi_var_numba import (
        _transform_multi_var,
    )

    out = np.empty((len(x), kernels.n_features), dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        part = slice(start, start + CHUNK)
        values, steps = real_steps(x[part], lengths[part])
        out[part] = _transform_multi_var(values, steps, kernels.parameters)
    return out
