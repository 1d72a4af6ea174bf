"""From calibrated probabilities to decisions, and the failure risk every view reports."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from componentx.errors import ParamsError


def expected_cost_decision(probs: np.ndarray, cost_matrix: np.ndarray) -> np.ndarray:
    """The prediction with the least expected cost, COST[actual][predicted]."""
    return np.argmin(probs @ np.asarray(cost_matrix, dtype=float), axis=1)


def decide(probs: np.ndarray, rule: str, cost_matrix: np.ndarray) -> np.ndarray:
    """Decisions (rows,) by ``rule``: ``argmax`` or ``expected_cost``."""
    if rule == "argmax":
        return probs.argmax(axis=1)
    return expected_cost_decision(probs, cost_matrix)


def failure_risk(probs: np.ndarray, risk_class: int) -> np.ndarray:
    """The probability of class ``risk_class`` or higher (``fleet.risk_class``): with time
    classes, of a failure within that class's window (1: the largest window)."""
    if not 1 <= risk_class < probs.shape[1]:
        raise ParamsError(f"fleet.risk_class must be in 1..{probs.shape[1] - 1}, got "
                          f"{risk_class}")
    return probs[:, risk_class:].sum(axis=1)


def risk_window(class_windows: Sequence[float] | None, risk_class: int) -> float | None:
    """The time window of :func:`failure_risk`: class ``c`` is a failure within
    ``class_windows[-c]`` (windows of classes K-1 … 1, increasing); None without windows."""
    if not class_windows:
        return None
    return class_windows[len(class_windows) - risk_class]


def risk_column(class_windows: Sequence[float] | None, risk_class: int) -> str:
    """The risk's name in tables: ``risk_failure_within_48`` or ``risk_class_2_or_higher``."""
    window = risk_window(class_windows, risk_class)
    return (f"risk_failure_within_{window:g}" if window is not None
            else f"risk_class_{risk_class}_or_higher")


def risk_title(class_windows: Sequence[float] | None, risk_class: int) -> str:
    """The risk in words: ``P(failure within 48)`` or ``P(class >= 2)``."""
    window = risk_window(class_windows, risk_class)
    return (f"P(failure within {window:g})" if window is not None
            else f"P(class >= {risk_class})")
