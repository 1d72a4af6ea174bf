"""MiniRocket features of the very windows the sequence model reads (its model inputs, the
age channel included), the specifications one-hot, standardised, and a multinomial logistic
regression with the class weights."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import numpy as np

from componentx.data.window_set import WindowSet
from componentx.decisions.priors import class_weights, training_priors
from componentx.errors import UserError
from componentx.rocket.kernels import Kernels, fit_kernels, transform

log = logging.getLogger(__name__)
ABSENT_CLASS_LOGIT = -30.0  # a class no training window has


@dataclass
class FittedRocket:
    """Fitted kernels, the standardisation of their features and of the one-hot
    specifications (``spec_cardinalities`` codes per column), and the logistic head
    (``coef`` (classes, features), ``intercept`` (classes,))."""

    kernels: Kernels
    spec_cardinalities: list[int]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def features(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        """Standardised features (windows, kernels + one-hot codes) float32 of left-padded
        windows ``x`` (windows, size, channels) with their real ``lengths`` and
        specification codes ``specs`` (windows, n_specs)."""
        raw = np.concatenate([transform(self.kernels, x, lengths),
                              one_hot(specs, self.spec_cardinalities)], axis=1)
        return (raw - self.mean) / self.scale

    def logits(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        """Logits (windows, classes) float64."""
        return self.features(x, lengths, specs).astype(np.float64) @ self.coef.T + \
            self.intercept

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array of the model, by name (``np.savez`` them; :meth:`from_arrays` reads
        them back)."""
        return {"mean": self.mean, "scale": self.scale, "coef": self.coef,
                "intercept": self.intercept, **self.kernels.to_arrays()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], spec_cardinalities: list[int]
                    ) -> FittedRocket:
        return cls(Kernels.from_arrays(arrays), spec_cardinalities, arrays["mean"],
                   arrays["scale"], arrays["coef"], arrays["intercept"])


def one_hot(specs: np.ndarray, cards: list[int]) -> np.ndarray:
    """(windows, sum(cards)) float32: a column per code of each specification column."""
    out = np.zeros((len(specs), sum(cards)), dtype=np.float32)
    offsets = np.cumsum([0, *cards])[:-1].astype(np.int64)
    for j, offset in enumerate(offsets):
        out[np.arange(len(specs)), offset + np.clip(specs[:, j], 0, cards[j] - 1)] = 1.0
    return out


def fit_rocket(windows: WindowSet, num_classes: int, cards: list[int], settings: dict
               ) -> tuple[FittedRocket, np.ndarray]:
    """Fit the kernels and the head on ``windows`` (``settings`` is ``params.rocket``);
    also returns the priors the head was trained under (class weights included)."""
    labels = windows.labels
    if len(np.unique(labels)) < 2:
        raise UserError("rocket: the windows it is fitted on hold a single class")
    everything = np.arange(len(windows))
    x = windows.arrays(everything)
    kernels = fit_kernels(x, windows.length, settings["kernels"], settings["seed"])
    unfitted = FittedRocket(kernels, cards, np.zeros(1, np.float32), np.ones(1, np.float32),
                            np.zeros(0), np.zeros(0))
    raw = unfitted.features(x, windows.length, windows.specs)
    del x
    mean = raw.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = raw.std(axis=0, dtype=np.float64).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    raw -= mean
    raw /= scale
    weights = class_weights(settings["class_weights"], labels, num_classes,
                            "rocket.class_weights")
    coef, intercept = fit_head(raw, labels, None if weights is None else weights[labels],
                               num_classes, settings)
    return (FittedRocket(kernels, cards, mean, scale, coef, intercept),
            training_priors(labels, weights, False, num_classes))


def fit_head(features: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None,
             num_classes: int, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised ``features`` minimising the mean
    (weighted) log loss plus ``settings["l2"] / 2`` times the squared norm of the
    coefficients (sklearn's ``C`` is ``1 / (l2 * windows)``): a penalty per window, so its
    strength relative to the data is the same at any size. Coefficients (classes, features)
    and intercepts (classes,) for every class (absent classes: zero coefficients and a very
    low intercept)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0 / (settings["l2"] * len(labels)),
                               max_iter=settings["max_iter"], tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels, sample_weight=sample_weight)
    present = model.classes_
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_LOGIT)
    if len(present) == 2:  # one logit: the second class against the first
        coef[present[1]], intercept[present] = model.coef_[0], (0.0, model.intercept_[0])
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return coef, intercept
