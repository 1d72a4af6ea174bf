"""From class probabilities to decisions: calibration, prior correction, minimum expected cost."""

from __future__ import annotations

import numpy as np

DECISION_RULES = ("argmax", "expected_cost")


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
    miscalibration is fitted. Fit on validation only.
    """
    import torch  # only to fit; applying a calibration needs numpy alone

    k = logits.shape[1]
    logits_t = torch.tensor(logits, dtype=torch.float64)
    offset_t = torch.tensor(np.broadcast_to(offset, (k,)), dtype=torch.float64)
    y_t = torch.tensor(y, dtype=torch.long)
    params = torch.zeros(k if fit_bias else 1, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], lr=0.1, max_iter=max_iter,
                                  line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        bias = torch.cat([params.new_zeros(1), params[1:]])
        loss = torch.nn.functional.cross_entropy(logits_t / params[0].exp() + offset_t + bias,
                                                 y_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    fitted = params.detach().numpy()
    return float(np.exp(fitted[0])), np.r_[0.0, fitted[1:]] if fit_bias else np.zeros(k)


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
