"""MiniRocket features of the windows the sequence model reads (of the channels
:func:`~componentx.rocket.kernels.split_inputs` picks, and the numbers it sets beside them)
and the specifications one-hot, with the linear head of :mod:`componentx.rocket.head`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from componentx.data.window_set import WindowSet, spilled_rows
from componentx.decisions.priors import class_weights, training_priors
from componentx.errors import UserError
from componentx.rocket.head import LinearHead, fit_head
from componentx.rocket.kernels import CHUNK, Kernels, fit_kernels, split_inputs, transform

log = logging.getLogger(__name__)
FULL_KERNELS, CAPPED_KERNELS = 9_996, 4_032  # MiniRocket's standard count; 48 x 84
RIDGE_WINDOWS = 4_096  # up to this many training windows: full kernel counts (ridge head)
KERNEL_SAMPLE = 10_000  # windows the kernels' biases are drawn from, at most


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


def fit_rocket(windows: WindowSet, num_classes: int, readouts: int, cards: list[int],
               settings: dict, work: Path) -> tuple[FittedRocket, np.ndarray]:
    """Fit the kernels (on :func:`kernel_sample`) and the head on ``windows`` of model inputs
    whose first ``readouts`` channels are the readouts (``settings`` is ``params.rocket``),
    transformed :data:`CHUNK` windows at a time into a file in ``work`` that the head reads
    back a block at a time. Also returns the priors the head was trained under (class weights
    included)."""
    labels = windows.labels
    if len(np.unique(labels)) < 2:
        raise UserError("rocket: the windows it is fitted on hold a single class")
    n = len(windows)
    sample = kernel_sample(n, settings["seed"])
    channels = settings["channels"]
    kernels = fit_kernels(split_inputs(windows.arrays(sample), channels, readouts)[0],
                          windows.length[sample], kernel_features(settings["kernels"], n),
                          settings["seed"])
    unfitted = FittedRocket(kernels, channels, readouts, cards, None)
    weights = class_weights(settings["class_weights"], labels, num_classes,
                            "rocket.class_weights")
    with spilled_rows(work / "features.npy", n, (
            unfitted.features(windows.arrays(rows), windows.length[rows], windows.specs[rows])
            for rows in np.array_split(np.arange(n), max(1, -(-n // CHUNK))))) as features:
        head = fit_head(features, labels, weights, num_classes, settings)
    log.info("rocket: %d features, %d windows, %s head (penalty %.3g)", features.shape[1], n,
             head.kind, head.alpha)
    return (FittedRocket(kernels, channels, readouts, cards, head),
            training_priors(labels, weights, False, num_classes))
