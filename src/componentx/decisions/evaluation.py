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
    """A model's evaluation: ``report`` (the shape of ``metrics/evaluate.json``: the fitted
    calibration and one block per split), and per split the scored windows and their
    vehicles."""

    report: dict
    scored: dict[str, ScoredSplit]
    vehicles: dict[str, np.ndarray]
    calibrator: Calibrator
    cost_matrix: np.ndarray
    rule: str  # evaluate.decision: what the predictions' ``predicted`` column holds

    def predictions(self, split: str) -> pd.DataFrame:
        """:func:`predictions_frame` of a split."""
        return predictions_frame(self.vehicles[split], self.scored[split], self.rule,
                                 self.cost_matrix)


def evaluate_logits(logits: dict[str, np.ndarray], labels: dict[str, np.ndarray],
                    vehicles: dict[str, np.ndarray], train_priors: np.ndarray,
                    cost_matrix: np.ndarray, settings: dict, method: str | None = None,
                    deployment_labels: np.ndarray | None = None) -> Evaluation:
    """Calibrate on the selection windows (``"validation"``), then score every split;
    ``settings`` is ``params.evaluate`` (``method`` overrides its calibration, see
    :func:`~componentx.decisions.calibration.calibration_method`).

    Only ``logits["validation"]`` and ``labels["validation"]`` fit anything. With
    ``settings["folds"]`` > 1 they are scored with cross-fitted calibration. With
    ``evaluate.priors: validation`` the deployment priors are the class mix of
    ``deployment_labels`` (the validation split's windows: cross-validated selection windows
    also hold train windows, drawn with another mix), by default ``labels["validation"]``.
    Intervals resample vehicles (``vehicles``).
    """
    method = method or settings["calibration"]
    k = logits["validation"].shape[1]
    priors = (class_priors(labels["validation"] if deployment_labels is None
                           else deployment_labels, k)
              if settings["priors"] == "validation" else settings["priors"])
    calibrator = fit_calibrator(logits["validation"], labels["validation"], train_priors,
                                priors, method)
    report: dict = {"calibration": calibrator.to_dict()}
    scored = {}
    for split, split_logits in logits.items():
        if split == "validation" and settings["folds"] > 1:
            probs = crossfit_probabilities(split_logits, labels[split], train_priors, priors,
                                           method, settings["folds"], settings["seed"])
        else:
            probs = calibrator.probabilities(split_logits)
        scored[split] = ScoredSplit(labels[split], split_logits, softmax(split_logits), probs)
        report[split] = split_report(labels[split], scored[split].raw_probs,
                                     scored[split].probs, cost_matrix, settings["decision"],
                                     settings["bootstrap"], settings["seed"], vehicles[split])
    return Evaluation(report, scored, vehicles, calibrator, cost_matrix, settings["decision"])


def paired_comparison(y: np.ndarray, pred: np.ndarray, other_pred: np.ndarray,
                      probs: np.ndarray, other_probs: np.ndarray, cost_matrix: np.ndarray,
                      n_boot: int, seed: int, vehicles: np.ndarray | None = None) -> dict:
    """This model minus another on the same windows: total cost and Brier score, with
    paired bootstrap intervals over ``vehicles`` (each window's vehicle; negative: this model
    is better)."""
    onehot = np.eye(probs.shape[1])[y]
    return {
        "cost_total": paired_interval(vehicle_costs(y, pred, cost_matrix),
                                      vehicle_costs(y, other_pred, cost_matrix), n_boot, seed,
                                      vehicles=vehicles),
        "brier": paired_interval(((probs - onehot) ** 2).sum(axis=1),
                                 ((other_probs - onehot) ** 2).sum(axis=1), n_boot, seed,
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
