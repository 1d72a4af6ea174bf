"""The kernel-transform candidate: MiniRocket features of the very windows the sequence model
reads (its model inputs, the age channel included), the specifications one-hot, standardised,
and a multinomial logistic regression with the class weights, whose logits go through the
calibration, decisions and metrics every model shares. Saved as arrays (``rocket.npz``,
loaded without pickle) and ``rocket.json``.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from componentx.data.layout import DatasetSummary
from componentx.data.specs import cardinalities, train_vocabularies
from componentx.data.window_set import WindowSet, load_window_set
from componentx.decisions.evaluation import Evaluation, evaluate_logits
from componentx.decisions.metrics import check_cost_matrix
from componentx.decisions.priors import class_weights, training_priors
from componentx.decisions.selection import plan_selection
from componentx.errors import BundleError, UserError
from componentx.rocket.kernels import CHUNK, Kernels, fit_kernels, transform

log = logging.getLogger(__name__)
ARRAYS, META = "rocket.npz", "rocket.json"
ABSENT_CLASS_LOGIT = -30.0  # a class no training window has


@dataclass
class FittedRocket:
    """Fitted kernels, the standardisation of their features and of the one-hot
    specifications (``spec_cardinalities`` codes per column), and the logistic head
    (``coef`` (classes, features), ``intercept`` (classes,))."""

    kernels: Kernels
    spec_cardinalities: list[int]
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def features(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        """Standardised features (windows, kernels + one-hot codes) float32 of left-padded
        windows ``x`` (windows, size, channels) with their real ``lengths`` and
        specification codes ``specs`` (windows, n_specs)."""
        raw = np.concatenate([transform(self.kernels, x, lengths),
                              one_hot(specs, self.spec_cardinalities)], axis=1)
        return (raw - self.mean) / self.scale

    def logits(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        """Logits (windows, classes) float64."""
        return self.features(x, lengths, specs).astype(np.float64) @ self.coef.T + \
            self.intercept

    def save(self, folder: Path) -> None:
        """Arrays in ``rocket.npz``, sizes in ``rocket.json``: data, no pickle."""
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / ARRAYS, mean=self.mean, scale=self.scale, coef=self.coef,
                 intercept=self.intercept, **self.kernels.to_arrays())
        (folder / META).write_text(json.dumps(
            {"features": self.kernels.n_features, "classes": len(self.intercept),
             "spec_cardinalities": self.spec_cardinalities}) + "\n")

    @classmethod
    def load(cls, folder: Path) -> FittedRocket:
        """Read ``rocket.npz`` as plain arrays (``allow_pickle=False``): a file that holds
        anything else is refused (:class:`BundleError`)."""
        try:
            meta = json.loads((Path(folder) / META).read_text())
            with np.load(Path(folder) / ARRAYS, allow_pickle=False) as arrays:
                data = {name: arrays[name] for name in arrays.files}
            return cls(Kernels.from_arrays(data), meta["spec_cardinalities"], data["mean"],
                       data["scale"], data["coef"], data["intercept"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BundleError(f"{folder}: the kernel model cannot be read ({error})") from None


def one_hot(specs: np.ndarray, cards: list[int]) -> np.ndarray:
    """(windows, sum(cards)) float32: a column per code of each specification column."""
    out = np.zeros((len(specs), sum(cards)), dtype=np.float32)
    offsets = np.cumsum([0, *cards])[:-1].astype(np.int64)
    for j, offset in enumerate(offsets):
        out[np.arange(len(specs)), offset + np.clip(specs[:, j], 0, cards[j] - 1)] = 1.0
    return out


def window_logits(model: FittedRocket, windows: WindowSet) -> np.ndarray:
    """Logits (windows, classes) of a window set, :data:`CHUNK` windows at a time."""
    parts = [model.logits(windows.arrays(index), windows.length[index], windows.specs[index])
             for index in np.array_split(np.arange(len(windows)),
                                         max(1, -(-len(windows) // CHUNK)))]
    return np.concatenate(parts) if parts else np.zeros((0, len(model.intercept)))


def fit_rocket(windows: WindowSet, num_classes: int, cards: list[int], settings: dict
               ) -> tuple[FittedRocket, np.ndarray]:
    """Fit the kernels and the head on ``windows`` (``settings`` is ``params.rocket``);
    also returns the priors the head was trained under (class weights included)."""
    labels = windows.labels
    if len(np.unique(labels)) < 2:
        raise UserError("rocket: the windows it is fitted on hold a single class")
    everything = np.arange(len(windows))
    x = windows.arrays(everything)
    kernels = fit_kernels(x, windows.length, settings["kernels"], settings["seed"])
    unfitted = FittedRocket(kernels, cards, np.zeros(1, np.float32), np.ones(1, np.float32),
                            np.zeros(0), np.zeros(0))
    raw = unfitted.features(x, windows.length, windows.specs)
    del x
    mean = raw.mean(axis=0, dtype=np.float64).astype(np.float32)
    scale = raw.std(axis=0, dtype=np.float64).astype(np.float32)
    scale[scale < 1e-6] = 1.0
    raw -= mean
    raw /= scale
    weights = class_weights(settings["class_weights"], labels, num_classes,
                            "rocket.class_weights")
    coef, intercept = fit_head(raw, labels, None if weights is None else weights[labels],
                               num_classes, settings)
    return (FittedRocket(kernels, cards, mean, scale, coef, intercept),
            training_priors(labels, weights, False, num_classes))


def fit_head(features: np.ndarray, labels: np.ndarray, sample_weight: np.ndarray | None,
             num_classes: int, settings: dict) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on standardised ``features`` minimising the mean
    (weighted) log loss plus ``settings["l2"] / 2`` times the squared norm of the
    coefficients (sklearn's ``C`` is ``1 / (l2 * windows)``): a penalty per window, so its
    strength relative to the data is the same at any size. Coefficients (classes, features)
    and intercepts (classes,) for every class (absent classes: zero coefficients and a very
    low intercept)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0 / (settings["l2"] * len(labels)),
                               max_iter=settings["max_iter"], tol=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(features, labels, sample_weight=sample_weight)
    present = model.classes_
    coef = np.zeros((num_classes, features.shape[1]))
    intercept = np.full(num_classes, ABSENT_CLASS_LOGIT)
    if len(present) == 2:  # one logit: the second class against the first
        coef[present[1]], intercept[present] = model.coef_[0], (0.0, model.intercept_[0])
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    return coef, intercept


def fit_and_evaluate(ingested: Path, windows: Path, inputs: Path, size: int, settings: dict,
                     evaluate: dict, selection_settings: dict
                     ) -> tuple[FittedRocket, Evaluation]:
    """Fit the candidate and evaluate it like every model (``settings`` is ``params.rocket``,
    ``evaluate`` ``params.evaluate``, ``selection_settings`` ``params.selection``): on
    validation, fitted on train; or, cross-validated (small data), fitted fold by fold for
    out-of-fold logits, then refitted on train and validation for the test split."""
    summary = DatasetSummary.load(ingested / "schema.json")
    num_classes, specs = summary.num_classes, summary.spec_columns
    cost_matrix = check_cost_matrix(evaluate["cost_matrix"], num_classes)
    cards = cardinalities(train_vocabularies(ingested, specs))
    selection = plan_selection(windows, selection_settings)
    fit_set = load_window_set(windows, inputs, ingested, ("train", "validation")
                              if selection.cross_validated else "train", specs, size)
    test = load_window_set(windows, inputs, ingested, "test", specs, size)
    if selection.cross_validated:
        selection_logits = np.zeros((len(fit_set), num_classes))
        for number, fitted_on, held in selection.split_folds():
            fold_model, _ = fit_rocket(fit_set.subset(fitted_on), num_classes, cards, settings)
            selection_logits[held] = window_logits(fold_model, fit_set.subset(held))
            log.info("rocket fold %d/%d: fitted on %d windows, predicted %d", number + 1,
                     selection.folds, len(fitted_on), len(held))
        model, priors = fit_rocket(fit_set, num_classes, cards, settings)
    else:
        model, priors = fit_rocket(fit_set, num_classes, cards, settings)
        selection_logits = window_logits(model, load_window_set(
            windows, inputs, ingested, "validation", specs, size))
    log.info("rocket: %d kernel features, %d windows fitted on (%s)", model.kernels.n_features,
             len(fit_set), selection.mode)
    evaluation = evaluate_logits(
        {"validation": selection_logits, "test": window_logits(model, test)},
        {"validation": selection.labels, "test": test.labels},
        {"validation": selection.vehicles, "test": test.windows["vehicle_id"].to_numpy()},
        priors, cost_matrix, evaluate, deployment_labels=selection.deployment_labels)
    evaluation.report["selection"] = selection.to_dict()
    return model, evaluation
