"""Classification metrics, the official misclassification cost, and bootstrap intervals."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from componentx.errors import ParamsError

# IDA 2024 challenge cost, COST[actual][predicted].
OFFICIAL_COST = [
    [0, 7, 8, 9, 10],
    [200, 0, 7, 8, 9],
    [300, 200, 0, 7, 8],
    [400, 300, 200, 0, 7],
    [500, 400, 300, 200, 0],
]


def check_cost_matrix(cost_matrix: list[list[float]] | str, num_classes: int) -> np.ndarray:
    """COST[actual][predicted] for ``num_classes`` classes; ``zero_one`` is 1 off the diagonal."""
    if cost_matrix == "zero_one":
        return 1.0 - np.eye(num_classes)
    matrix = np.asarray(cost_matrix, dtype=float)
    if matrix.shape != (num_classes, num_classes):
        raise ParamsError(f"evaluate.cost_matrix is {matrix.shape[0]}x{matrix.shape[-1]} but the "
                         f"data have {num_classes} classes: give a {num_classes}x{num_classes} "
                         "matrix, or evaluate.cost_matrix=zero_one")
    return matrix


def confusion(y: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts[actual, predicted]."""
    flat = np.asarray(y) * num_classes + np.asarray(pred)
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def total_cost(y: np.ndarray, pred: np.ndarray, cost_matrix: np.ndarray) -> float:
    return float((confusion(y, pred, len(cost_matrix)) * cost_matrix).sum())


def vehicle_costs(y: np.ndarray, pred: np.ndarray, cost_matrix: np.ndarray) -> np.ndarray:
    """The cost of each vehicle's decision, COST[actual][predicted]."""
    return np.asarray(cost_matrix, dtype=float)[np.asarray(y), np.asarray(pred)]


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
    return confusion_metrics(confusion(y, pred, len(cost_matrix)), cost_matrix)


def confusion_metrics(counts: np.ndarray, cost_matrix: np.ndarray) -> dict:
    """:func:`decision_metrics` from the confusion counts[actual, predicted]."""
    k = len(cost_matrix)
    n = int(counts.sum())
    precision, recall, f1 = _f1_from_confusion(counts)
    support = counts.sum(axis=1)
    cost = float((counts * cost_matrix).sum())
    return {
        "accuracy": float(np.trace(counts) / max(n, 1)),
        "macro_f1": float(f1.mean()),
        "weighted_f1": float((f1 * support).sum() / max(support.sum(), 1)),
        "cost_total": cost,
        "cost_per_vehicle": cost / max(n, 1),
        "per_class": {
            f"class_{c}": {"precision": float(precision[c]), "recall": float(recall[c]),
                           "f1": float(f1[c]), "support": int(support[c])}
            for c in range(k)
        },
    }


def _binned_calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int) -> float:
    """Sum over equal-width confidence bins of |mean hit - mean confidence| x bin share."""
    which = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    gap = np.bincount(which, hit, bins) - np.bincount(which, confidence, bins)
    return float(np.abs(gap).sum() / max(len(confidence), 1))


def probability_metrics(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> dict:
    """Brier score, calibration errors, log loss, one-vs-rest ROC-AUC and PR-AUC.

    ``ece`` is top-label (it mostly measures class 0 on a fleet); ``classwise_ece`` bins each
    class's own probability. The ``macro`` AUCs average the failure classes 1..K-1 only;
    class 0 is reported apart.
    """
    k = probs.shape[1]
    onehot = np.eye(k)[y]
    classwise = {f"class_{c}": _binned_calibration_error(probs[:, c], onehot[:, c], bins)
                 for c in range(k)}
    roc, pr = {}, {}
    for c in range(k):
        positives = onehot[:, c]
        if 0 < positives.sum() < len(y):
            roc[f"class_{c}"] = float(roc_auc_score(positives, probs[:, c]))
            pr[f"class_{c}"] = float(average_precision_score(positives, probs[:, c]))

    def failure_macro(scores: dict[str, float]) -> float | None:
        failures = [v for name, v in scores.items() if name != "class_0"]
        return float(np.mean(failures)) if failures else None

    return {
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()),
        "ece": _binned_calibration_error(probs.max(axis=1),
                                         (probs.argmax(axis=1) == y).astype(float), bins),
        "classwise_ece": {**classwise, "macro": float(np.mean(list(classwise.values())))},
        "log_loss": float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean()),
        "roc_auc": {**roc, "macro": failure_macro(roc)},
        "pr_auc": {**pr, "macro": failure_macro(pr)},
    }


def vehicle_groups(vehicles: np.ndarray | None, n: int) -> np.ndarray:
    """Each row's vehicle as 0, 1, ... in order of first appearance (each row its own when
    ``vehicles`` is None): the unit the bootstrap resamples. Rows of one vehicle (several
    windows, when train windows are cross-validated) are resampled together."""
    if vehicles is None:
        return np.arange(n)
    _, first, inverse = np.unique(np.asarray(vehicles), return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[inverse.ravel()]


def resampled_vehicles(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` bootstrap resamples of ``n`` vehicles (0 .. n-1, drawn with replacement),
    one (n,) array at a time: an interval's memory grows with the vehicles, not with
    resamples × vehicles."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, n, size=n)


def paired_interval(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0,
                    level: float = 0.95, reduce: str = "sum",
                    vehicles: np.ndarray | None = None) -> dict:
    """Paired bootstrap of ``reduce(a) - reduce(b)`` over the same resampled vehicles.

    ``a`` and ``b`` are per-window losses of two models on the same windows (e.g. the cost of
    each decision), ``vehicles`` each window's vehicle (every window its own by default).
    Returns the observed difference, its percentile interval and the share of resamples in
    which ``a`` is lower.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired comparison needs the same vehicles, got {a.shape} and {b.shape}")
    difference = a - b
    per_vehicle = np.bincount(vehicle_groups(vehicles, len(a)), weights=difference)
    resampled = np.array([per_vehicle[drawn].sum()
                          for drawn in resampled_vehicles(len(per_vehicle), n_boot, seed)])
    if reduce == "mean":
        resampled = resampled / len(a)
    tail = (1 - level) / 2 * 100
    return {
        "difference": float(difference.sum() if reduce == "sum" else difference.mean()),
        "ci": np.percentile(resampled, [tail, 100 - tail]).tolist(),
        "share_first_lower": float((resampled < 0).mean()),
    }


def bootstrap_intervals(y: np.ndarray, pred: np.ndarray, cost_matrix: np.ndarray,
                        n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                        vehicles: np.ndarray | None = None) -> dict[str, list[float]]:
    """Percentile intervals of total cost and macro-F1, resampling vehicles with replacement
    (``vehicles``: each window's vehicle, every window its own by default)."""
    k = len(cost_matrix)
    groups = vehicle_groups(vehicles, len(y))
    n = int(groups.max()) + 1 if len(groups) else 0
    cell = np.asarray(y) * k + np.asarray(pred)
    # each window counts as often as its vehicle was drawn
    counts = np.stack([np.bincount(cell, weights=np.bincount(drawn, minlength=n)[groups],
                                   minlength=k * k).reshape(k, k)
                       for drawn in resampled_vehicles(n, n_boot, seed)])
    costs = (counts * cost_matrix).sum(axis=(1, 2))
    macro_f1 = _f1_from_confusion(counts)[2].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return {
        "cost_total_ci": np.percentile(costs, [tail, 100 - tail]).tolist(),
        "macro_f1_ci": np.percentile(macro_f1, [tail, 100 - tail]).tolist(),
    }


def curves_on_grid(y: np.ndarray, probs: np.ndarray, points: int = 101
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """One-vs-rest precision-recall and ROC curves per class on a common x grid (small plots);
    a class without positives (or without negatives) gets an empty (NaN) curve, so plot
    definitions always find their columns."""
    grid = np.linspace(0.0, 1.0, points)
    pr, roc = {"recall": grid}, {"fpr": grid}
    for c in range(probs.shape[1]):
        positives = (y == c).astype(int)
        if not 0 < positives.sum() < len(y):
            pr[f"class_{c}"] = roc[f"class_{c}"] = np.full(points, np.nan)
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
