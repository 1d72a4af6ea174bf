"""The kernel candidates' head: one-vs-rest ridge regression on standardised features, its
penalty chosen on the training windows alone, in memory that does not grow with them.

The targets are +1 for a window's class and -1 for the others (the standard pipeline's
``RidgeClassifierCV``); class weights are normalised to a mean of 1 over the windows, so the
penalty means what it says whatever the weights. The penalty is the one of :data:`ALPHAS`
with the lowest leave-one-out error where there are at most as many windows as features
(the dual form: the windows' Gram matrix, exact, as ``RidgeClassifierCV``), and the lowest
generalised cross-validation error beyond (the primal form, from the features' weighted
moments accumulated chunk by chunk: memory of features² whatever the windows). The scores
are not probabilities: the calibration fits a temperature and per-class biases to them
(:meth:`componentx.candidates.interface.Candidate.calibration_method`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

ALPHAS = np.logspace(-3, 3, 10)  # the standard pipeline's grid
ABSENT_CLASS_LOGIT = -30.0  # a class no training window has
SCALE_FLOOR = 1e-6  # features with a smaller weighted std are left unscaled (constant)


@dataclass
class RidgeHead:
    """Standardisation (``mean``, ``scale``: (features,)) and one-vs-rest ridge scores
    (``coef`` (classes, features), ``intercept`` (classes,)); ``alpha`` the chosen penalty
    and ``errors`` the selection criterion at each of :data:`ALPHAS`."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    errors: list[float]

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Scores (windows, classes) float64 of raw features (windows, features)."""
        standardised = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return standardised @ self.coef.T + self.intercept


def _targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    targets = -np.ones((len(labels), num_classes))
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


def normalised_weights(labels: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray:
    """Each window's weight: its class's, scaled to a mean of 1 over the windows."""
    weights = np.ones(len(labels)) if class_weights is None else np.asarray(
        class_weights, dtype=np.float64)[labels]
    return weights * len(weights) / weights.sum()


def _moments_to_head(n: int, total: float, sx: np.ndarray, sxx: np.ndarray, sy: np.ndarray,
                     sxy: np.ndarray, syy: np.ndarray) -> tuple:
    """Weighted mean and scale, and the centred, scaled Gram, cross and target moments."""
    mean, y_mean = sx / total, sy / total
    variance = np.clip(np.diag(sxx) / total - mean ** 2, 0.0, None)
    scale = np.where(np.sqrt(variance) < SCALE_FLOOR, 1.0, np.sqrt(variance))
    gram = (sxx - total * np.outer(mean, mean)) / np.outer(scale, scale)
    cross = (sxy - total * np.outer(mean, y_mean)) / scale[:, None]
    target = syy - total * y_mean ** 2
    return mean, scale, y_mean, gram, cross, target


def _present(labels: np.ndarray, num_classes: int, coef: np.ndarray,
             intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes no training window has get zero coefficients and a very low intercept."""
    absent = np.bincount(labels, minlength=num_classes) == 0
    coef[absent], intercept[absent] = 0.0, ABSENT_CLASS_LOGIT
    return coef, intercept


def fit_primal(chunks: Iterable[tuple[np.ndarray, np.ndarray]], labels: np.ndarray,
               weights: np.ndarray, num_classes: int) -> RidgeHead:
    """The head from ``chunks`` of (features (rows, d) raw, their positions in ``labels``):
    weighted moments accumulated chunk by chunk, the penalty by generalised cross-validation
    on one eigendecomposition of the (d, d) Gram matrix."""
    targets = _targets(labels, num_classes)
    sx = sxx = sxy = None
    for features, rows in chunks:
        x = np.asarray(features, dtype=np.float64)
        w, y = weights[rows], targets[rows]
        if sx is None:
            d = x.shape[1]
            sx, sxx, sxy = np.zeros(d), np.zeros((d, d)), np.zeros((d, num_classes))
        sx += w @ x
        sxx += (x * w[:, None]).T @ x
        sxy += (x * w[:, None]).T @ y
    total = weights.sum()
    mean, scale, y_mean, gram, cross, target = _moments_to_head(
        len(labels), total, sx, sxx, weights @ targets, sxy, weights @ targets ** 2)
    eigenvalues, vectors = np.linalg.eigh(gram)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = vectors.T @ cross  # (d, classes)
    n = len(labels)
    errors = []
    for alpha in ALPHAS:
        shrink = (eigenvalues + 2 * alpha) / (eigenvalues + alpha) ** 2
        residual = target - (projected ** 2 * shrink[:, None]).sum(axis=0)
        freedom = (eigenvalues / (eigenvalues + alpha)).sum() + 1  # and the intercept
        errors.append(float(n * residual.sum() / max(n - freedom, 1e-12) ** 2))
    best = int(np.argmin(errors))
    coef = (vectors @ (projected / (eigenvalues + ALPHAS[best])[:, None])).T
    coef, intercept = _present(labels, num_classes, coef, y_mean.copy())
    return RidgeHead(mean, scale, coef, intercept, float(ALPHAS[best]), errors)


def fit_dual(features: np.ndarray, labels: np.ndarray, weights: np.ndarray,
             num_classes: int) -> RidgeHead:
    """The head from all features (windows, d) at once, where windows <= d: the penalty by
    exact leave-one-out on one eigendecomposition of the (windows, windows) Gram matrix."""
    x = np.asarray(features, dtype=np.float64)
    targets = _targets(labels, num_classes)
    total = weights.sum()
    mean = weights @ x / total
    variance = np.clip(weights @ (x - mean) ** 2 / total, 0.0, None)
    scale = np.where(np.sqrt(variance) < SCALE_FLOOR, 1.0, np.sqrt(variance))
    y_mean = weights @ targets / total
    root = np.sqrt(weights)[:, None]
    xt = root * (x - mean) / scale
    yt = root * (targets - y_mean)
    eigenvalues, vectors = np.linalg.eigh(xt @ xt.T)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    projected = vectors.T @ yt
    # The centring puts sqrt(weights) in the Gram matrix's null space: that direction is the
    # intercept's, fitted apart, and left out of the leave-one-out leverage.
    intercept_direction = np.argmax(np.abs(vectors.T @ (root[:, 0] / np.linalg.norm(root))))
    errors, duals = [], []
    for alpha in ALPHAS:
        inverse = 1.0 / (eigenvalues + alpha)
        inverse[intercept_direction] = 0.0
        dual = vectors @ (projected * inverse[:, None])
        diagonal = (vectors ** 2) @ inverse
        errors.append(float(((dual / diagonal[:, None]) ** 2).sum() / len(labels)))
        duals.append(dual)
    best = int(np.argmin(errors))
    coef = (xt.T @ duals[best]).T
    coef, intercept = _present(labels, num_classes, coef, y_mean.copy())
    return RidgeHead(mean, scale, coef, intercept, float(ALPHAS[best]), errors)
