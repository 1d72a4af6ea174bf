"""Turn a model's validation and test logits into calibrated decisions and metrics.

Shared by every model (the sequence model and the GBDT baseline), so their metrics files have
the same shape. Nothing here is fitted on the test split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from componentx.decisions.calibration import (
    Calibrator,
    crossfit_probabilities,
    fit_calibrator,
    softmax,
)
from componentx.decisions.metrics import (
    bootstrap_intervals,
    decision_metrics,
    paired_interval,
    probability_metrics,
    total_cost,
    vehicle_costs,
)
from componentx.decisions.priors import class_priors
from componentx.decisions.rules import decide

log = logging.getLogger(__name__)


@dataclass
class ScoredSplit:
    """One split's labels, raw logits and probabilities: the model's own and calibrated."""

    y: np.ndarray
    logits: np.ndarray
    raw_probs: np.ndarray
    probs: np.ndarray


@dataclass
class Evaluation:
    """A model's evaluation: ``report`` (the shape of ``metrics/candidates/<name>.json``: the
    fitted calibration and one block per split), and per split the scored windows, their
    vehicles, the keys the intervals resample (one per vehicle of a split) and each window's
    weight towards the deployment class mix."""

    report: dict
    scored: dict[str, ScoredSplit]
    vehicles: dict[str, np.ndarray]
    keys: dict[str, np.ndarray]
    weights: dict[str, np.ndarray]
    calibrator: Calibrator
    cost_matrix: np.ndarray
    rule: str  # evaluate.decision: what the predictions' ``predicted`` column holds

    def predictions(self, split: str) -> pd.DataFrame:
        """:func:`predictions_frame` of a split, with each window's ``vehicle_key`` and
        ``weight``."""
        return predictions_frame(self.vehicles[split], self.scored[split], self.rule,
                                 self.cost_matrix).assign(vehicle_key=self.keys[split],
                                                          weight=self.weights[split])


def deployment_weights(labels: np.ndarray, deployment_priors: np.ndarray) -> np.ndarray:
    """Each window's weight (mean 1) that gives ``labels`` the deployment class mix: the
    deployment prior of its class over the class's share of ``labels`` (both smoothed as
    :func:`~componentx.decisions.priors.class_priors`); all 1 where the mixes agree."""
    k = len(deployment_priors)
    return (np.asarray(deployment_priors) / class_priors(labels, k))[labels]


def evaluate_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                    vehicles: dict[str, np.ndarray], train_priors: np.ndarray,
                    cost_matrix: np.ndarray, settings: dict, method: str | None = None,
                    deployment_labels: np.ndarray | None = None,
                    keys: dict[str, np.ndarray] | None = None) -> Evaluation:
    """Calibrate on the selection windows (``"validation"``), then score every split;
    ``settings`` is ``params.evaluate`` (``method`` overrides its calibration, see
    :func:`~componentx.decisions.calibration.calibration_method`).

    Only ``logits["validation"]`` and ``labels["validation"]`` fit anything. With
    ``settings["folds"]`` > 1 they are scored with the calibration cross-fitted over folds of
    vehicles. With ``evaluate.priors: validation`` the deployment priors are the class mix of
    ``deployment_labels`` (the validation split's windows: cross-validated selection windows
    also hold train windows, drawn with another mix), by default ``labels["validation"]``;
    the selection windows' ``weights`` give them that mix. Intervals resample vehicles:
    ``keys`` (one per vehicle of a split, :func:`~componentx.decisions.selection.vehicle_keys`),
    by default ``vehicles``.
    """
    method = method or settings["calibration"]
    keys = keys or vehicles
    k = logits["validation"].shape[1]
    deployment = class_priors(labels["validation"] if deployment_labels is None
                              else deployment_labels, k)
    priors = deployment if settings["priors"] == "validation" else settings["priors"]
    calibrator = fit_calibrator(logits["validation"], labels["validation"], train_priors,
                                priors, method)
    report: dict = {"calibration": calibrator.to_dict()}
    scored, weights = {}, {}
    for split, split_logits in logits.items():
        if split == "validation" and settings["folds"] > 1:
            probs = crossfit_probabilities(split_logits, labels[split], keys[split],
                                           train_priors, priors, method, settings["folds"],
                                           settings["seed"])
        else:
            probs = calibrator.probabilities(split_logits)
        weights[split] = (deployment_weights(labels[split], deployment)
                          if split == "validation" else np.ones(len(labels[split])))
        scored[split] = ScoredSplit(labels[split], split_logits, softmax(split_logits), probs)
        report[split] = split_report(labels[split], scored[split].raw_probs,
                                     scored[split].probs, cost_matrix, settings["decision"],
                                     settings["bootstrap"], settings["seed"], keys[split])
    return Evaluation(report, scored, vehicles, keys, weights, calibrator, cost_matrix,
                      settings["decision"])


def paired_comparison(y: np.ndarray, pred: np.ndarray, other_pred: np.ndarray,
                      probs: np.ndarray, other_probs: np.ndarray, cost_matrix: np.ndarray,
                      n_boot: int, seed: int, vehicles: np.ndarray | None = None,
                      weights: np.ndarray | None = None) -> dict:
    """This model minus another on the same windows: total cost and Brier score (each
    window counted ``weights`` times, once by default), with paired bootstrap intervals over
    ``vehicles`` (each window's vehicle; negative: this model is better)."""
    onehot = np.eye(probs.shape[1])[y]
    w = np.ones(len(y)) if weights is None else np.asarray(weights, dtype=float)
    return {
        "cost_total": paired_interval(w * vehicle_costs(y, pred, cost_matrix),
                                      w * vehicle_costs(y, other_pred, cost_matrix), n_boot,
                                      seed, vehicles=vehicles),
        "brier": paired_interval(w * ((probs - onehot) ** 2).sum(axis=1),
                                 w * ((other_probs - onehot) ** 2).sum(axis=1), n_boot, seed,
                                 reduce="mean", vehicles=vehicles),
    }


def split_report(y: np.ndarray, raw_probs: np.ndarray, probs: np.ndarray,
                 cost_matrix: np.ndarray, rule: str, n_boot: int, seed: int,
                 vehicles: np.ndarray | None = None) -> dict:
    """Metrics of one split, top level for ``rule``, with a block per decision rule; the
    intervals resample ``vehicles`` (each window's vehicle).

    ``argmax`` decides on the model's own probabilities; ``expected_cost`` minimises the
    expected cost under the calibrated, prior-corrected ``probs``.
    """
    blocks = {}
    for name, source in (("argmax", raw_probs), ("expected_cost", probs)):
        pred = decide(source, name, cost_matrix)
        blocks[name] = {**decision_metrics(y, pred, cost_matrix),
                        **bootstrap_intervals(y, pred, cost_matrix, n_boot, seed,
                                              vehicles=vehicles)}
    uncalibrated = probability_metrics(y, raw_probs)
    return {
        **blocks[rule],
        **probability_metrics(y, probs),
        "uncalibrated": {k: uncalibrated[k] for k in ("brier", "ece", "log_loss")}
        | {"classwise_ece": uncalibrated["classwise_ece"]["macro"]},
        "cost_always_0": total_cost(y, np.zeros_like(y), cost_matrix),
        **blocks,
    }


def log_summary(model: str, split: str, report: dict) -> None:
    log.info("%s %s: cost %.0f %s (always 0: %.0f; argmax %.0f), macro-F1 %.3f, failure "
             "PR-AUC %.3f, ECE %.3f (classwise %.4f)", model, split, report["cost_total"],
             np.round(report["cost_total_ci"]).tolist(), report["cost_always_0"],
             report["argmax"]["cost_total"], report["macro_f1"], report["pr_auc"]["macro"],
             report["ece"], report["classwise_ece"]["macro"])


def predictions_frame(vehicle_ids: np.ndarray, scored: ScoredSplit, rule: str,
                      cost_matrix: np.ndarray) -> pd.DataFrame:
    """One row per vehicle: label, raw logits, calibrated probabilities and decisions."""
    frame = pd.DataFrame({"vehicle_id": vehicle_ids, "class_label": scored.y})
    for c in range(scored.probs.shape[1]):
        frame[f"logit_{c}"] = scored.logits[:, c]
    probs = scored.probs
    for c in range(probs.shape[1]):
        frame[f"prob_{c}"] = probs[:, c]
    frame["predicted_argmax"] = decide(scored.raw_probs, "argmax", cost_matrix)
    frame["predicted_expected_cost"] = decide(probs, "expected_cost", cost_matrix)
    frame["predicted"] = frame[f"predicted_{rule}"]
    return frame
