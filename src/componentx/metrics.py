"""Classification metrics, the official misclassification cost, and bootstrap intervals."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

# IDA 2024 challenge cost, COST[actual][predicted].
OFFICIAL_COST = [
    [0, 7, 8, 9, 10],
    [200, 0, 7, 8, 9],
    [300, 200, 0, 7, 8],
    [400, 300, 200, 0, 7],
    [500, 400, 300, 200, 0],
]


def check_cost_matrix(cost_matrix: list[list[float]], num_classes: int) -> np.ndarray:
    matrix = np.asarray(cost_matrix, dtype=float)
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"evaluate.cost_matrix must be {num_classes}x{num_classes}, "
                         f"got shape {matrix.shape}")
    return matrix


def confusion(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[actual, predicted]."""
    flat = np.asarray(y) * num_classes + np.asarray(pred)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def total_cost(y: np.ndarray, pred: np.ndarray, cost_matrix: np.ndarray) -> float:
    return float((confusion(y, pred, len(cost_matrix)) * cost_matrix).sum())


def _f1_from_confusion(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 per class along the last two axes (0 where undefined)."""
    tp = np.diagonal(counts, axis1=-2, axis2=-1).astype(float)
    predicted, actual = counts.sum(axis=-2), counts.sum(axis=-1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, actual, out=np.zeros_like(tp), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(tp),
                   where=denominator > 0)
    return precision, recall, f1


def decision_metrics(y: np.ndarray, pred: np.ndarray, cost_matrix: np.ndarray) -> dict:
    """Accuracy, F1 scores, per-class scores and the cost of hard decisions."""
    k = len(cost_matrix)
    counts = confusion(y, pred, k)
    precision, recall, f1 = _f1_from_confusion(counts)
    support = counts.sum(axis=1)
    cost = float((counts * cost_matrix).sum())
    return {
        "accuracy": float(np.trace(counts) / max(len(y), 1)),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / max(support.sum(), 1)),
        "cost_total": cost,
        "cost_per_vehicle": cost / max(len(y), 1),
        "per_class": {
            f"class_{c}": {"precision": float(precision[c]), "recall": float(recall[c]),
                           "f1": float(f1[c]), "support": int(support[c])}
            for c in range(k)
        },
    }


def probability_metrics(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict:
    """Brier score, top-label ECE, log loss, one-vs-rest ROC-AUC and PR-AUC."""
    k = probs.shape[1]
    onehot = np.eye(k)[y]
    confidence, top = probs.max(axis=1), probs.argmax(axis=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    correct = (top == y).astype(float)
    ece = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    roc, pr = {}, {}
    for c in range(k):
        positives = onehot[:, c]
        if 0 < positives.sum() < len(y):
            roc[f"class_{c}"] = float(roc_auc_score(positives, probs[:, c]))
            pr[f"class_{c}"] = float(average_precision_score(positives, probs[:, c]))
    return {
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()),
        "ece": float(ece),
        "log_loss": float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean()),
        "roc_auc": {**roc, "macro": float(np.mean(list(roc.values()))) if roc else None},
        "pr_auc": {**pr, "macro": float(np.mean(list(pr.values()))) if pr else None},
    }


def bootstrap_intervals(y: np.ndarray, pred: np.ndarray, cost_matrix: np.ndarray,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95
                        ) -> dict[str, list[float]]:
    """Percentile intervals of total cost and macro-F1, resampling vehicles with replacement."""
    k, n = len(cost_matrix), len(y)
    rng = np.random.default_rng(seed)
    sample = rng.integers(0, n, size=(n_boot, n))
    flat = (np.arange(n_boot)[:, None] * k * k + y[sample] * k + pred[sample]).ravel()
    counts = np.bincount(flat, minlength=n_boot * k * k).reshape(n_boot, k, k)
    costs = (counts * cost_matrix).sum(axis=(1, 2))
    macro_f1 = _f1_from_confusion(counts)[2].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return {
        "cost_total_ci": np.percentile(costs, [tail, 100 - tail]).tolist(),
        "macro_f1_ci": np.percentile(macro_f1, [tail, 100 - tail]).tolist(),
    }


def curves_on_grid(y: np.ndarray, probs: np.ndarray, points: int = 101
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One-vs-rest precision-recall and ROC curves per class on a common x grid (small plots)."""
    grid = np.linspace(0.0, 1.0, points)
    pr, roc = {"recall": grid}, {"fpr": grid}
    for c in range(probs.shape[1]):
        positives = (y == c).astype(int)
        if not 0 < positives.sum() < len(y):
            continue
        order = np.argsort(-probs[:, c], kind="stable")
        tp = np.cumsum(positives[order])
        precision = tp / np.arange(1, len(y) + 1)
        recall = tp / positives.sum()
        # Interpolated precision: best precision at recall >= r.
        best = np.maximum.accumulate(precision[::-1])[::-1]
        pr[f"class_{c}"] = best[np.minimum(np.searchsorted(recall, grid), len(recall) - 1)]
        fpr, tpr, _ = roc_curve(positives, probs[:, c])
        roc[f"class_{c}"] = np.interp(grid, fpr, tpr)
    return pr, roc
