"""MiniRocket features of the windows the sequence model reads (of the channels
:func:`~componentx.rocket.kernels.split_inputs` picks, and the numbers it sets beside them)
and the specifications one-hot, with the linear head of :mod:`componentx.rocket.head`.

The kernels are fitted on a sample of the training windows (:func:`kernel_sample`); the
features of every training window are computed bucket by bucket on the cluster, a chunk of
windows at a time (:func:`fit_head_on_buckets`, which the MultiRocket candidate's head uses
too), and past 256 MiB the head reads them from disk a block at a time."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from componentx.candidates.interface import LabelledWindows, Windows
from componentx.data.features import FeatureStats
from componentx.data.window_set import NpyRows, WindowSet, spilled_rows, write_npy_header
from componentx.decisions.priors import class_weights, training_priors
from componentx.errors import UserError
from componentx.rocket.head import LinearHead, fit_head
from componentx.rocket.kernels import (
    CHUNK,
    Kernels,
    fit_kernels,
    split_inputs,
    transform,
    window_score_chunks,
)

log = logging.getLogger(__name__)
FULL_KERNELS, CAPPED_KERNELS = 9_996, 4_032  # MiniRocket's standard count; 48 x 84
RIDGE_WINDOWS = 4_096  # up to this many training windows: full kernel counts (ridge head)
KERNEL_SAMPLE = 10_000  # windows the kernels' biases are drawn from, at most
Features = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]  # (x, lengths, specs)


@dataclass
class FittedRocket:
    """Fitted kernels over the ``channels`` of :func:`~componentx.rocket.kernels.split_inputs`
    (``readouts`` of them), the one-hot specifications (``spec_cardinalities`` codes per
    column) and the linear head on all (:class:`~componentx.rocket.head.LinearHead`)."""

    kernels: Kernels
    channels: str
    readouts: int
    spec_cardinalities: list[int]
    head: LinearHead

    def features(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        """Raw features (windows, kernels + numbers beside + one-hot codes) float32 of
        left-padded model-input windows ``x`` (windows, size, inputs + 1) with their real
        ``lengths`` and specification codes ``specs`` (windows, n_specs)."""
        convolved, beside = split_inputs(x, self.channels, self.readouts)
        return np.concatenate([transform(self.kernels, convolved, lengths), beside,
                               one_hot(specs, self.spec_cardinalities)], axis=1)

    def logits(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        """The head's scores (windows, classes) float64."""
        return self.head.scores(self.features(x, lengths, specs))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the model, by name (``np.savez`` them; :meth:`from_arrays` reads
        them back)."""
        head = self.head
        return {"mean": head.mean, "scale": head.scale, "coef": head.coef,
                "intercept": head.intercept, **self.kernels.to_arrays()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], channels: str, readouts: int,
                    spec_cardinalities: list[int], head: dict) -> FittedRocket:
        """The model of :meth:`to_arrays` and the head's ``kind``, ``alpha`` and
        ``errors`` (``head``)."""
        return cls(Kernels.from_arrays(arrays), channels, readouts, spec_cardinalities,
                   LinearHead(
            head["kind"], arrays["mean"], arrays["scale"], arrays["coef"],
            arrays["intercept"], head["alpha"], head["errors"]))


def one_hot(specs: np.ndarray, cards: list[int]) -> np.ndarray:
    """(windows, sum(cards)) float32: a column per code of each specification column."""
    out = np.zeros((len(specs), sum(cards)), dtype=np.float32)
    offsets = np.cumsum([0, *cards])[:-1].astype(np.int64)
    for j, offset in enumerate(offsets):
        out[np.arange(len(specs)), offset + np.clip(specs[:, j], 0, cards[j] - 1)] = 1.0
    return out


def kernel_features(setting: int | str, windows: int) -> int:
    """``rocket.kernels``: a number, or ``auto``: :data:`FULL_KERNELS` up to
    :data:`RIDGE_WINDOWS` training windows (the ridge head's regime), else
    :data:`CAPPED_KERNELS` (the logistic head's: as good there, measured, in half the
    time)."""
    if setting != "auto":
        return int(setting)
    return FULL_KERNELS if windows <= RIDGE_WINDOWS else CAPPED_KERNELS


def kernel_sample(windows: int, seed: int) -> np.ndarray:
    """The windows the kernels' biases are drawn from: all, or :data:`KERNEL_SAMPLE` of them
    (seeded), in order."""
    if windows <= KERNEL_SAMPLE:
        return np.arange(windows)
    return np.sort(np.random.default_rng(seed).choice(windows, KERNEL_SAMPLE, replace=False))


def rocket_kernels(windows: WindowSet, readouts: int, cards: list[int], settings: dict
                   ) -> FittedRocket:
    """The kernels fitted on :func:`kernel_sample` of ``windows`` (model inputs whose first
    ``readouts`` channels are the readouts; ``settings`` is ``params.rocket``), no head yet."""
    if len(np.unique(windows.labels)) < 2:
        raise UserError("rocket: the windows it is fitted on hold a single class")
    sample = kernel_sample(len(windows), settings["seed"])
    return FittedRocket(fit_kernels(
        split_inputs(windows.arrays(sample), settings["channels"], readouts)[0],
        windows.length[sample], kernel_features(settings["kernels"], len(windows)),
        settings["seed"]), settings["channels"], readouts, cards, None)


def bucket_features(windows: Windows, features: Features, stats: FeatureStats, size: int,
                    chunk: int, folder: Path) -> Path:
    """``features(x, lengths, specs)`` (windows, d) float32 of one bucket's model-input
    windows, computed and written ``chunk`` windows at a time into a new ``.npy`` file in
    ``folder`` (a task): its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{uuid.uuid4().hex}.npy"  # a task run twice writes two files
    with path.open("wb") as handle:
        for number, part in enumerate(window_score_chunks(windows, stats, size, chunk,
                                                          features)):
            if number == 0:
                write_npy_header(handle, len(windows), part.shape[1:], np.float32)
            handle.write(np.ascontiguousarray(part, dtype=np.float32).tobytes())
    return path


def fit_head_on_buckets(windows: LabelledWindows, features: Features, stats: FeatureStats,
                        size: int, chunk: int, weights: np.ndarray | None, num_classes: int,
                        settings: dict, work: Path, client: Any = None) -> LinearHead:
    """The head (:func:`~componentx.rocket.head.fit_head`, with class ``weights``;
    ``settings`` its ``l2`` and ``max_iter``) on the raw ``features`` of labelled windows:
    computed bucket by bucket on ``client``'s cluster (or here) into files in ``work``
    (:func:`bucket_features`), then gathered, a block of ``chunk`` windows at a time in the
    windows' order, into the matrix the head reads a block at a time (on disk past 256 MiB:
    :func:`~componentx.data.window_set.spilled_rows`). Memory: a chunk's features in a task,
    a block here."""
    try:
        parts = windows.map_buckets(bucket_features, (features, stats, size, chunk,
                                                      work / "buckets"), client,
                                    "kernel features")
        part, local = np.empty(len(windows), np.int64), np.empty(len(windows), np.int64)
        for number, (rows, _) in enumerate(parts):
            part[rows], local[rows] = number, np.arange(len(rows))
        files = [NpyRows(path) for _, path in parts]

        def blocks() -> Iterator[np.ndarray]:
            # a bucket's rows are in the windows' order: a block reads a range of each file
            for start in range(0, len(windows), chunk):
                block = slice(start, start + chunk)
                out = np.empty((len(part[block]), files[0].shape[1]), dtype=np.float32)
                for number in np.unique(part[block]):
                    mine = part[block] == number
                    rows = local[block][mine]
                    first = rows.min()
                    out[mine] = files[number][first:rows.max() + 1][rows - first]
                yield out

        with spilled_rows(work / "features.npy", len(windows), blocks()) as matrix:
            return fit_head(matrix, windows.labels, weights, num_classes, settings)
    finally:
        shutil.rmtree(work / "buckets", ignore_errors=True)


def fit_rocket(windows: LabelledWindows, num_classes: int, stats: FeatureStats, size: int,
               cards: list[int], settings: dict, work: Path, client: Any = None
               ) -> tuple[FittedRocket, np.ndarray]:
    """Fit the kernels (:func:`rocket_kernels`) and the head (:func:`fit_head_on_buckets`)
    on labelled ``windows`` of the model inputs of ``stats`` (``settings`` is
    ``params.rocket``). Also returns the priors the head was trained under (class weights
    included)."""
    labels = windows.labels
    model = rocket_kernels(windows.window_set(), len(stats.source_features), cards, settings)
    weights = class_weights(settings["class_weights"], labels, num_classes,
                            "rocket.class_weights")
    model.head = fit_head_on_buckets(windows, model.features, stats, size, CHUNK, weights,
                                     num_classes, settings, work, client)
    log.info("rocket: %d features, %d windows, %s head (penalty %.3g)",
             len(model.head.mean), len(windows), model.head.kind, model.head.alpha)
    return model, training_priors(labels, weights, False, num_classes)
