"""The kernel candidates' head: a linear model on the standardised features, by the rule
MiniRocket's authors give and the measurements here confirm.

- **At most as many windows as features**: one-vs-rest ridge regression (targets +1 for a
  window's class, -1 for the others), its penalty the one of :data:`ALPHAS` with the lowest
  exact leave-one-out error, from one eigendecomposition of the windows' Gram matrix: the
  standard pipeline's ``RidgeClassifierCV`` (tested to choose the same penalty and
  predictions). Its scores are not probabilities: the calibration fits a temperature and
  per-class biases to them.
- **More windows than features**: multinomial logistic regression (L-BFGS, reading the
  features a block of rows at a time, from disk past 256 MiB: its memory then does not grow
  with the windows),
  whose logits the calibration treats like a network's. Measured on the default fleet
  (12,053 windows, 4,032 features), the ridge head costs 36,597 on validation where the
  logistic one costs 32,119 (failure PR-AUC 0.015 against 0.031): squared error on +-1
  targets ranks rare classes badly.
  Its penalty is ``l2`` per window, fixed (the leave-one-out shortcut has no logistic
  counterpart, and an inner search would cost minutes there); a fit that stops before it
  converges says so in the log.

Class weights are normalised to a mean of 1 over the windows, so a penalty means what it says
whatever the weights.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import numpy as np

from componentx.data.window_set import NpyRows, spilled_rows

log = logging.getLogger(__name__)
ALPHAS = np.logspace(-3, 3, 10)  # the standard pipeline's grid
ABSENT_CLASS_LOGIT = -30.0  # a class no training window has
SCALE_FLOOR = 1e-6  # features with a smaller weighted std are left unscaled (constant)


@dataclass
class LinearHead:
    """Standardisation (``mean``, ``scale``: (features,)) and scores ``coef`` (classes,
    features) and ``intercept`` (classes,); ``kind`` is ``ridge`` (its ``alpha`` chosen by
    leave-one-out, ``errors`` at each of :data:`ALPHAS`) or ``logistic`` (``alpha``: its
    penalty per window)."""

    kind: str
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    errors: list[float]

    def describe(self) -> str:
        """The head in words, for the model card."""
        if self.kind == "ridge":
            return f"ridge head (penalty {self.alpha:.3g}, chosen by leave-one-out)"
        return f"multinomial logistic head (penalty {self.alpha:.3g} per window)"

    def calibration(self, requested: str) -> str:
        """The calibration its scores need: ridge scores are not log-posteriors, so a
        temperature and per-class biases (``bias_temperature``) unless ``none`` is asked."""
        return requested if self.kind == "logistic" or requested == "none" \
            else "bias_temperature"

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Scores (windows, classes) float64 of raw features (windows, features), the same
        bits in any process: summed by numpy's einsum, not by BLAS, whose sums depend on its
        threads (a Dask worker has one, this process as many as cores)."""
        standardised = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return np.einsum("wf,cf->wc", standardised, self.coef) + self.intercept


def _targets(labels: np.ndarray, num_classes: int) -> np.ndarray:
    targets = -np.ones((len(labels), num_classes))
    targets[np.arange(len(labels)), labels] = 1.0
    return targets


def normalised_weights(labels: np.ndarray, class_weights: np.ndarray | None) -> np.ndarray:
    """Each window's weight: its class's, scaled to a mean of 1 over the windows."""
    weights = np.ones(len(labels)) if class_weights is None else np.asarray(
        class_weights, dtype=np.float64)[labels]
    return weights * len(weights) / weights.sum()


def _present(labels: np.ndarray, num_classes: int, coef: np.ndarray,
             intercept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes no training window has get zero coefficients and a very low intercept."""
    absent = np.bincount(labels, minlength=num_classes) == 0
    coef[absent], intercept[absent] = 0.0, ABSENT_CLASS_LOGIT
    return coef, intercept


def _standardisation(x: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and std of each feature (std 1 where it is constant)."""
    mean = weights @ x / weights.sum()
    variance = np.clip(weights @ (x - mean) ** 2 / weights.sum(), 0.0, None)
    return mean, np.where(np.sqrt(variance) < SCALE_FLOOR, 1.0, np.sqrt(variance))


def fit_ridge(features: np.ndarray, labels: np.ndarray, weights: np.ndarray,
              num_classes: int) -> LinearHead:
    """The ridge head from features (windows, d), windows <= d: the penalty by exact
    leave-one-out on one eigendecomposition of the (windows, windows) Gram matrix."""
    x = np.asarray(features, dtype=np.float64)
    targets = _targets(labels, num_classes)
    total = weights.sum()
    mean, scale = _standardisation(x, weights)
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
    return LinearHead("ridge", mean, scale, coef, intercept, float(ALPHAS[best]), errors)


Rows = np.ndarray | NpyRows  # features (windows, d) float32, in memory or on disk
READ_ROWS = 4096  # feature rows the logistic head reads at a time


def _row_blocks(features: Rows) -> Iterator[tuple[slice, np.ndarray]]:
    """Each block of :data:`READ_ROWS` rows of ``features`` with its rows, as float32."""
    for start in range(0, features.shape[0], READ_ROWS):
        rows = slice(start, min(start + READ_ROWS, features.shape[0]))
        yield rows, np.asarray(features[rows], dtype=np.float32)


def fit_logistic(features: Rows, labels: np.ndarray, weights: np.ndarray, num_classes: int,
                 l2: float, max_iter: int) -> LinearHead:
    """The logistic head: minimises the weighted mean log loss plus ``l2 / 2`` times the
    squared norm of the coefficients (a penalty per window), by L-BFGS with scikit-learn's
    ``LogisticRegression`` settings (the objective of its ``C = 1 / (l2 * windows)`` with
    weights of mean 1: multinomial, one logit for two classes), reading ``features`` a block
    of rows at a time: its memory is a block and the coefficients, whatever the windows."""
    from scipy.optimize import minimize
    from scipy.special import expit, logsumexp

    n, d = features.shape
    mean = sum(block.sum(axis=0, dtype=np.float64) for _, block in _row_blocks(features)) / n
    scale = np.sqrt(sum(((block - mean) ** 2).sum(axis=0) for _, block in
                        _row_blocks(features)) / n)
    scale[scale < SCALE_FLOOR] = 1.0
    present = np.unique(labels)
    code = np.searchsorted(present, labels)  # each window's class among those present
    columns = 1 if len(present) == 2 else len(present)
    mean32, scale32 = mean.astype(np.float32), scale.astype(np.float32)

    def loss_and_gradient(theta: np.ndarray, x: Rows) -> tuple[float, np.ndarray]:
        coef, intercept = theta[:columns * d].reshape(columns, d), theta[columns * d:]
        coef32 = coef.astype(np.float32)
        loss, gradient = 0.0, np.zeros((columns, d + 1))
        for rows, block in _row_blocks(x):
            z = (block @ coef32.T).astype(np.float64) + intercept
            w, y = weights[rows], code[rows]
            if columns == 1:
                loss += float(w @ (np.logaddexp(0.0, z[:, 0]) - y * z[:, 0]))
                residual = (w * (expit(z[:, 0]) - y))[:, None]
            else:
                normaliser = logsumexp(z, axis=1)
                loss += float(w @ (normaliser - z[np.arange(len(y)), y]))
                residual = np.exp(z - normaliser[:, None])
                residual[np.arange(len(y)), y] -= 1.0
                residual *= w[:, None]
            gradient[:, :d] += residual.astype(np.float32).T @ block
            gradient[:, d] += residual.sum(axis=0)
        gradient /= n
        gradient[:, :d] += l2 * coef
        return loss / n + l2 / 2 * float((coef ** 2).sum()), np.concatenate(
            [gradient[:, :d].ravel(), gradient[:, d]])

    with ExitStack() as stack:  # standardised once: on disk beside features, or in memory
        if isinstance(features, NpyRows):
            x = stack.enter_context(spilled_rows(
                features.path.with_suffix(".standardised.npy"), n,
                ((block - mean32) / scale32 for _, block in _row_blocks(features)), 0))
        else:
            x = np.asarray(features, dtype=np.float32) - mean32
            x /= scale32
        found = minimize(loss_and_gradient, np.zeros(columns * (d + 1)), args=(x,), jac=True,
                         method="L-BFGS-B", options={"maxiter": max_iter, "maxls": 50,
                                                     "gtol": 1e-4,
                                                     "ftol": 64 * np.finfo(float).eps})
    if not found.success:
        log.warning("the logistic head's L-BFGS stopped after %d iterations, unconverged: "
                    "%s (more: rocket.max_iter / multirocket.max_iter)", found.nit,
                    found.message)
    fitted = found.x[:columns * d].reshape(columns, d)
    coef, intercept = np.zeros((num_classes, d)), np.zeros(num_classes)
    if columns == 1:  # one logit: the second class against the first
        coef[present[1]], intercept[present] = fitted[0], (0.0, found.x[-1])
    else:
        coef[present], intercept[present] = fitted, found.x[columns * d:]
    coef, intercept = _present(labels, num_classes, coef, intercept)
    return LinearHead("logistic", mean, scale, coef, intercept, l2, [])


def fit_head(features: Rows, labels: np.ndarray, class_weights: np.ndarray | None,
             num_classes: int, settings: dict) -> LinearHead:
    """The head for these windows (see the module) from their features (windows, d): ridge
    with leave-one-out where there are at most as many windows as features (then read
    whole: at most d x d), else logistic, a block of rows at a time (``settings``: ``l2``,
    ``max_iter``)."""
    weights = normalised_weights(labels, class_weights)
    n, d = features.shape
    if n <= d:
        return fit_ridge(np.asarray(features[0:n]), labels, weights, num_classes)
    return fit_logistic(features, labels, weights, num_classes, settings["l2"],
                        settings["max_iter"])
