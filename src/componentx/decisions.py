"""From class probabilities to decisions: calibration, prior correction, minimum expected cost."""

from __future__ import annotations

import numpy as np
import torch

DECISION_RULES = ("argmax", "expected_cost")


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, y: np.ndarray, max_iter: int = 200) -> float:
    """Temperature minimising the negative log-likelihood of ``y`` (fit on validation only)."""
    logits_t = torch.tensor(logits, dtype=torch.float64)
    y_t = torch.tensor(y, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), y_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.exp().item())


def class_priors(y: np.ndarray, num_classes: int, smoothing: float = 0.5) -> np.ndarray:
    """Class frequencies with additive smoothing, so no prior is exactly zero."""
    counts = np.bincount(y, minlength=num_classes) + smoothing
    return counts / counts.sum()


def shift_priors(probs: np.ndarray, source_priors: np.ndarray, target_priors: np.ndarray
                 ) -> np.ndarray:
    """Re-weight probabilities learned under ``source_priors`` to ``target_priors``."""
    weighted = probs * (np.asarray(target_priors) / np.asarray(source_priors))[None, :]
    return weighted / weighted.sum(axis=1, keepdims=True)


def expected_cost_decision(probs: np.ndarray, cost_matrix: np.ndarray) -> np.ndarray:
    """The prediction with the least expected cost, COST[actual][predicted]."""
    return np.argmin(probs @ np.asarray(cost_matrix, dtype=float), axis=1)


def decide(probs: np.ndarray, rule: str, cost_matrix: np.ndarray) -> np.ndarray:
    if rule == "argmax":
        return probs.argmax(axis=1)
    if rule == "expected_cost":
        return expected_cost_decision(probs, cost_matrix)
    raise ValueError(f"decision rule must be one of {DECISION_RULES}, got {rule!r}")
