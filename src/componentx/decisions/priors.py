"""Class priors: what a model was trained under, and how probabilities move between priors."""

from __future__ import annotations

import numpy as np

from componentx.errors import ParamsError


def class_priors(y: np.ndarray, num_classes: int, smoothing: float = 0.5) -> np.ndarray:
    """Class frequencies with additive smoothing, so no prior is exactly zero."""
    counts = np.bincount(y, minlength=num_classes) + smoothing
    return counts / counts.sum()


def shift_priors(probs: np.ndarray, source_priors: np.ndarray, target_priors: np.ndarray
                 ) -> np.ndarray:
    """Re-weight probabilities learned under ``source_priors`` to ``target_priors``."""
    weighted = probs * (np.asarray(target_priors) / np.asarray(source_priors))[None, :]
    return weighted / weighted.sum(axis=1, keepdims=True)


def class_weights(setting: str | list[float], labels: np.ndarray, num_classes: int,
                  key: str = "train.class_weights") -> np.ndarray | None:
    """Loss weights per class (float32): ``none``, ``inverse`` frequency (mean 1 over the
    classes present), or an explicit list of ``num_classes`` weights."""
    if setting == "none":
        return None
    if setting == "inverse":
        counts = np.bincount(labels, minlength=num_classes).astype(float)
        weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
        return np.asarray(weights / weights[counts > 0].mean(), dtype=np.float32)
    if isinstance(setting, list | tuple) and len(setting) == num_classes:
        return np.asarray([float(w) for w in setting], dtype=np.float32)
    raise ParamsError(f"{key} must be 'none', 'inverse' or a list of {num_classes} numbers "
                      f"(one per class), got {setting!r}")


def training_priors(labels: np.ndarray, weights: np.ndarray | None, balanced: bool,
                    num_classes: int) -> np.ndarray:
    """Class priors a model is trained under: the label frequencies, re-weighted by the loss
    weights and a class-balanced sampler. :class:`~componentx.decisions.calibration.Calibrator`
    moves probabilities from these to the deployment priors."""
    priors = np.full(num_classes, 1.0 / num_classes) if balanced else class_priors(
        labels, num_classes)
    if weights is not None:
        priors = priors * np.maximum(np.asarray(weights).astype(float), 1e-6)
    return priors / priors.sum()
