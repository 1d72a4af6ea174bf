"""Calibrated probabilities from a model's logits, fitted on validation only.

numpy alone applies a calibration (a shipped bundle needs nothing more); the fit uses scipy.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from componentx.decisions.priors import class_priors
from componentx.errors import ParamsError

log = logging.getLogger(__name__)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_scaling(logits: np.ndarray, y: np.ndarray, offset: np.ndarray, fit_bias: bool,
                max_iter: int = 200) -> tuple[float, np.ndarray]:
    """Temperature ``T`` (and per-class biases ``b``, the first fixed at 0) minimising the
    negative log-likelihood of ``softmax(logits / T + offset + b)`` on ``y``.

    ``offset`` is the known log prior ratio of the fitting sample, so only the model's own
    miscalibration is fitted. Fit on validation only (L-BFGS with the exact gradient).
    """
    from scipy.optimize import minimize

    k = logits.shape[1]
    offset = np.broadcast_to(np.asarray(offset, dtype=float), (k,))
    onehot = np.eye(k)[y]

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        temperature = np.exp(params[0])
        z = logits / temperature + offset + np.r_[0.0, params[1:]]
        z = z - z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(axis=1))
        residual = (np.exp(z - log_norm[:, None]) - onehot) / len(y)
        gradient = np.r_[-(residual * logits).sum() / temperature, residual.sum(axis=0)[1:]]
        return float((log_norm - (z * onehot).sum(axis=1)).mean()), gradient[:len(params)]

    fitted = minimize(loss_and_gradient, np.zeros(k if fit_bias else 1), jac=True,
                      method="L-BFGS-B", options={"maxiter": max_iter}).x
    return float(np.exp(fitted[0])), np.r_[0.0, fitted[1:]] if fit_bias else np.zeros(k)


@dataclass
class Calibrator:
    """Calibrated probabilities ``softmax(z / T + b + r)``.

    ``T`` (and with ``bias_temperature`` the per-class biases ``b``) are fitted on validation;
    ``r = log π_deploy - log π_train`` moves the model from the class priors it was trained
    under to the deployment priors. The prior shift is not divided by the temperature.
    """

    method: str
    temperature: float
    bias: np.ndarray
    log_prior_ratio: np.ndarray

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits / self.temperature + self.bias + self.log_prior_ratio)

    def to_dict(self) -> dict:
        return {"method": self.method, "temperature": self.temperature,
                "bias": self.bias.tolist(), "log_prior_ratio": self.log_prior_ratio.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Calibrator:
        return cls(data["method"], float(data["temperature"]), np.asarray(data["bias"]),
                   np.asarray(data["log_prior_ratio"]))


def fit_calibrator(val_logits: np.ndarray, val_y: np.ndarray, train_priors: np.ndarray,
                   deployment_priors: np.ndarray | None, method: str) -> Calibrator:
    """Fit the calibration on validation.

    ``train_priors`` are the priors the model was trained under; ``deployment_priors`` those
    it will meet (validation's own when None). The fit sees validation's prior shift as a
    known offset, so ``T`` and the biases only absorb the model's miscalibration.
    """
    k = val_logits.shape[1]
    validation_priors = class_priors(val_y, k)
    target = validation_priors if deployment_priors is None else np.asarray(
        deployment_priors, dtype=float)
    if target.shape != (k,) or (target <= 0).any():
        raise ParamsError(f"evaluate.priors must be 'validation' or {k} positive numbers (one "
                          "per class)")
    train_log = np.log(np.asarray(train_priors, dtype=float))
    ratio = np.log(target / target.sum()) - train_log
    if method == "none":
        return Calibrator(method, 1.0, np.zeros(k), ratio)
    temperature, bias = fit_scaling(val_logits, val_y, np.log(validation_priors) - train_log,
                                    fit_bias=method == "bias_temperature")
    return Calibrator(method, temperature, bias, ratio)


def crossfit_probabilities(val_logits: np.ndarray, val_y: np.ndarray, keys: np.ndarray,
                           train_priors: np.ndarray, deployment_priors: np.ndarray | None,
                           method: str, folds: int, seed: int) -> np.ndarray:
    """Validation probabilities in which each vehicle (``keys``: each window's, see
    :func:`~componentx.decisions.selection.vehicle_keys`) is calibrated by a fit on folds of
    the other vehicles (keyed, stratified by class), so validation scores do not reward a
    calibration for fitting its own sample."""
    from componentx.decisions.selection import vehicle_folds

    fold = vehicle_folds(np.zeros(len(keys), dtype=np.int64), keys, val_y, folds, seed)
    probs = np.empty_like(val_logits, dtype=float)
    for f in range(folds):
        held = fold == f
        calibrator = fit_calibrator(val_logits[~held], val_y[~held], train_priors,
                                    deployment_priors, method)
        probs[held] = calibrator.probabilities(val_logits[held])
    return probs


def calibration_method(method: str, loss: str, label_smoothing: float) -> str:
    """Focal loss and label smoothing do not learn prior-shifted posteriors: a plain prior
    shift is then wrong, so the per-class biases fitted on validation take over."""
    if method == "bias_temperature" or (loss != "focal" and not label_smoothing):
        return method
    log.warning("train.loss=%s, label_smoothing=%g: the model's probabilities are not the "
                "training posteriors, so a prior shift alone cannot correct them; using "
                "evaluate.calibration=bias_temperature instead of %s", loss, label_smoothing,
                method)
    return "bias_temperature"
