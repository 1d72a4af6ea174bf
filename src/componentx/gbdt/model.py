"""The boosted trees: fitted on the summary features, kept at the iteration with the lowest
smoothed expected cost on the windows they tune on, saved as data (never a pickle)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from sklearn.ensemble import HistGradientBoostingClassifier

from componentx.compute import local_workers
from componentx.decisions.calibration import softmax
from componentx.decisions.metrics import confusion
from componentx.decisions.priors import class_priors, shift_priors
from componentx.decisions.rules import expected_cost_decision
from componentx.errors import BundleError

log = logging.getLogger(__name__)
SMOOTHING = 9  # boosting iterations averaged when choosing the best one on validation
SKLEARN_FILE, LIGHTGBM_FILE = "model.skops", "model.txt"
# What a fitted HistGradientBoostingClassifier is made of beyond skops' default trusted types;
# a file that holds anything else is refused, so loading it cannot run code.
SKLEARN_TYPES = (  # categorical specifications bring the last two
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "functools.partial", "sklearn.utils.validation.check_array",
)


def _load_sklearn(path: Path) -> Any:
    import skops.io

    untrusted = set(skops.io.get_untrusted_types(file=path)) - set(SKLEARN_TYPES)
    if untrusted:
        raise BundleError(f"{path} holds types a fitted HistGradientBoostingClassifier does not "
                          f"({sorted(untrusted)[:3]}): refused, loading it could run code")
    return skops.io.load(path, trusted=list(SKLEARN_TYPES))


def resolve_size_settings(settings: dict, n_train: int) -> dict:
    """``min_samples_leaf`` and ``max_leaf_nodes`` as given, or with ``auto`` sized to the
    training windows: leaves of about 2% of them (2 to 20), about 5% as many leaves (4 to 31)."""
    resolved = dict(settings)
    if settings["min_samples_leaf"] == "auto":
        resolved["min_samples_leaf"] = int(np.clip(n_train // 50, 2, 20))
    if settings["max_leaf_nodes"] == "auto":
        resolved["max_leaf_nodes"] = int(np.clip(n_train // 20, 4, 31))
    return resolved


def decision_confusion(probs: np.ndarray, y: np.ndarray, train_priors: np.ndarray,
                       target_priors: np.ndarray, cost_matrix: np.ndarray) -> np.ndarray:
    """Counts[actual, decided] (classes, classes) of the expected-cost decisions, the
    probabilities (windows, classes) moved from the training priors to ``target_priors``.
    Counts add up over any split of the windows: their cost is ``(counts * cost).sum()``."""
    shifted = shift_priors(np.maximum(probs, 1e-9), train_priors, target_priors)
    return confusion(y, expected_cost_decision(shifted, cost_matrix), len(cost_matrix))


def validation_cost(probs: np.ndarray, y: np.ndarray, train_priors: np.ndarray,
                    cost_matrix: np.ndarray) -> float:
    """Total cost of the expected-cost decisions on validation, the probabilities moved from
    the training priors to validation's (the quantity early stopping watches)."""
    counts = decision_confusion(probs, y, train_priors, class_priors(y, len(cost_matrix)),
                                cost_matrix)
    return float((counts * cost_matrix).sum())


def staged_confusions(fitted: FittedTrees, features: pd.DataFrame, y: np.ndarray,
                      train_priors: np.ndarray, target_priors: np.ndarray,
                      cost_matrix: np.ndarray) -> np.ndarray:
    """:func:`decision_confusion` after each boosting iteration grown: (iterations, classes,
    classes) int64. Summed over buckets of tuning windows (``target_priors`` those of all of
    them), the same counts as of all the windows at once."""
    return np.array([decision_confusion(probs, y, train_priors, target_priors, cost_matrix)
                     for probs in staged_probabilities(fitted, features, len(cost_matrix))])


def best_iteration(costs: Sequence[float], smoothing: int = SMOOTHING) -> int:
    """The number of iterations with the lowest cost averaged over ``smoothing`` neighbours
    (a few failing vehicles make single iterations noisy); the earliest on ties."""
    costs = np.asarray(costs, dtype=float)
    kernel = np.ones(min(smoothing, len(costs)))
    smoothed = np.convolve(costs, kernel, mode="same") / np.convolve(
        np.ones_like(costs), kernel, mode="same")
    return int(np.argmin(smoothed)) + 1


@dataclass
class FittedTrees:
    """A boosted-tree model, the number of its iterations kept, and the tuning cost after
    each iteration grown (where they were tuned)."""

    library: str
    model: Any  # lightgbm.Booster or sklearn's HistGradientBoostingClassifier
    iterations: int
    tuning_costs: list[float]

    def probabilities(self, features: pd.DataFrame, num_classes: int) -> np.ndarray:
        if self.library == "lightgbm":  # the columns in the trees' order, as an array
            return self.model.predict(features.to_numpy(), num_iteration=self.iterations)
        probs = np.full((len(features), num_classes), 1e-9)
        probs[:, self.model.classes_] = self.model.predict_proba(features)
        return probs

    def logits(self, features: pd.DataFrame, num_classes: int) -> np.ndarray:
        """Log-probabilities for every class (classes unseen in training get a tiny floor)."""
        probs = np.maximum(self.probabilities(features, num_classes), 1e-9)
        return np.log(probs / probs.sum(axis=1, keepdims=True))

    def save(self, folder: Path) -> str:
        """The model as data, never a pickle: LightGBM's text format, or scikit-learn's in
        skops format; returns the file's name."""
        if self.library == "lightgbm":
            self.model.save_model(str(folder / LIGHTGBM_FILE), num_iteration=self.iterations)
            return LIGHTGBM_FILE
        import skops.io

        skops.io.dump(self.model, folder / SKLEARN_FILE)
        return SKLEARN_FILE

    @classmethod
    def load(cls, folder: Path, library: str, iterations: int) -> FittedTrees:
        """Read a fitted model as data: a file that would need other code than a
        HistGradientBoostingClassifier's to load is refused (:class:`BundleError`)."""
        if library == "lightgbm":
            import lightgbm

            try:
                model = lightgbm.Booster(model_file=str(folder / LIGHTGBM_FILE))
            except lightgbm.basic.LightGBMError as error:
                raise BundleError(f"{folder / LIGHTGBM_FILE} cannot be loaded ({error})"
                                  ) from None
        else:
            model = _load_sklearn(folder / SKLEARN_FILE)
        return cls(library, model, iterations, [])


def lightgbm_params(settings: dict, num_classes: int) -> dict:
    """The LightGBM parameters of ``params.gbdt`` (sizes resolved)."""
    return {"objective": "multiclass", "num_class": num_classes,
            "learning_rate": settings["learning_rate"], "num_leaves": settings["max_leaf_nodes"],
            "min_data_in_leaf": settings["min_samples_leaf"],
            "lambda_l2": settings["l2_regularization"], "seed": settings["seed"],
            "deterministic": True, "force_row_wise": True, "verbosity": -1,
            # every core (Dask's workers ask for one OpenMP thread through the environment,
            # which would otherwise reach this process too)
            "num_threads": os.cpu_count() or 1}


def fit_tuned_trees(train: pd.DataFrame, train_y: np.ndarray, sample_weight: np.ndarray | None,
                 validation: pd.DataFrame, val_y: np.ndarray, train_priors: np.ndarray,
                 cost_matrix: np.ndarray, spec_names: list[str], settings: dict
                 ) -> FittedTrees:
    """Boosted trees (``settings`` is ``params.gbdt``) with the specifications as
    categories, kept at the iteration with the lowest smoothed validation cost.

    LightGBM stops ``patience`` iterations after that point; scikit-learn's
    HistGradientBoostingClassifier runs ``max_iter`` and is refitted to it.
    """
    settings = resolve_size_settings(settings, len(train))
    num_classes = len(cost_matrix)
    if settings["library"] == "lightgbm":
        import lightgbm

        costs: list[float] = []

        def expected_cost(probs: np.ndarray, _: object) -> tuple[str, float, bool]:
            costs.append(validation_cost(probs, val_y, train_priors, cost_matrix))
            return "expected_cost", costs[-1], False

        def stop_without_gain(env: Any) -> None:
            best = best_iteration(costs)
            if len(costs) - best >= settings["patience"]:
                raise lightgbm.callback.EarlyStopException(best - 1, env.evaluation_result_list)

        booster = lightgbm.train(
            lightgbm_params(settings, num_classes),
            lightgbm.Dataset(train, train_y, weight=sample_weight,
                             categorical_feature=spec_names or "auto", free_raw_data=False),
            num_boost_round=settings["max_iter"],
            valid_sets=[lightgbm.Dataset(validation, val_y, categorical_feature=spec_names
                                         or "auto")],
            feval=expected_cost, callbacks=[stop_without_gain])
        return FittedTrees("lightgbm", booster, best_iteration(costs), costs)
    return _fit_sklearn(train, train_y, sample_weight, validation, val_y, train_priors,
                        cost_matrix, spec_names, settings)


def _sklearn_trees(settings: dict, spec_names: list[str], train: pd.DataFrame,
                   iterations: int) -> HistGradientBoostingClassifier:
    categorical = [train.columns.get_loc(name) for name in spec_names] or None
    return HistGradientBoostingClassifier(
        max_iter=iterations, learning_rate=settings["learning_rate"],
        max_leaf_nodes=settings["max_leaf_nodes"], min_samples_leaf=settings["min_samples_leaf"],
        l2_regularization=settings["l2_regularization"], categorical_features=categorical,
        early_stopping=False, random_state=settings["seed"])


def fit_trees(train: pd.DataFrame, train_y: np.ndarray, sample_weight: np.ndarray | None,
              spec_names: list[str], settings: dict, iterations: int, num_classes: int
              ) -> FittedTrees:
    """Exactly ``iterations`` boosting iterations (no early stopping), sizes of
    ``settings`` resolved."""
    if settings["library"] == "lightgbm":
        import lightgbm

        booster = lightgbm.train(
            lightgbm_params(settings, num_classes),
            lightgbm.Dataset(train, train_y, weight=sample_weight,
                             categorical_feature=spec_names or "auto"),
            num_boost_round=iterations)
        return FittedTrees("lightgbm", booster, iterations, [])
    model = _sklearn_trees(settings, spec_names, train, iterations).fit(
        train, train_y, sample_weight=sample_weight)
    return FittedTrees("sklearn", model, iterations, [])


def staged_probabilities(fitted: FittedTrees, features: pd.DataFrame, num_classes: int
                         ) -> Iterator[np.ndarray]:
    """The probabilities (windows, classes) after each boosting iteration of all that were
    grown, in order."""
    if fitted.library == "lightgbm":
        raw = np.zeros((len(features), num_classes))
        for iteration in range(fitted.model.current_iteration()):
            raw += fitted.model.predict(features, raw_score=True, start_iteration=iteration,
                                        num_iteration=1)
            yield softmax(raw)
        return
    for staged in fitted.model.staged_predict_proba(features):
        probs = np.full((len(features), num_classes), 1e-9)
        probs[:, fitted.model.classes_] = staged
        yield probs


def _fit_sklearn(train: pd.DataFrame, train_y: np.ndarray, sample_weight: np.ndarray | None,
                 validation: pd.DataFrame, val_y: np.ndarray, train_priors: np.ndarray,
                 cost_matrix: np.ndarray, spec_names: list[str], settings: dict
                 ) -> FittedTrees:
    num_classes = len(cost_matrix)
    fitted = fit_trees(train, train_y, sample_weight, spec_names, settings, settings["max_iter"],
                       num_classes)
    costs = [validation_cost(probs, val_y, train_priors, cost_matrix)
             for probs in staged_probabilities(fitted, validation, num_classes)]
    best = best_iteration(costs)
    if best < fitted.model.n_iter_:
        fitted = fit_trees(train, train_y, sample_weight, spec_names, settings, best,
                           num_classes)
    return FittedTrees("sklearn", fitted.model, best, costs)


def fit_lightgbm_on_cluster(client: Any, train: Any, tuning_confusions: Callable[
        [FittedTrees], np.ndarray], cost_matrix: np.ndarray, spec_names: list[str],
        settings: dict) -> FittedTrees:
    """The LightGBM fit of :func:`fit_tuned_trees` with LightGBM's Dask interface, on the
    workers that hold ``train`` (a Dask DataFrame of the features with ``label`` and
    ``weight`` columns). That interface has no early stopping: all ``max_iter`` trees are
    grown, then ``tuning_confusions`` of them (:func:`staged_confusions` of the tuning
    windows, wherever they are computed) give the cost after each iteration, and the same
    rule chooses the iteration."""
    import lightgbm

    log.info("fitting with LightGBM's Dask interface on %d workers",
             len(client.scheduler_info()["workers"]))
    features = [c for c in train.columns if c not in ("label", "weight")]
    params = lightgbm_params(settings, len(cost_matrix))
    params.pop("num_threads")  # the workers' threads
    # The regressor's wrapper passes the multiclass objective through with every class,
    # whichever classes a worker's partitions hold.
    model = lightgbm.DaskLGBMRegressor(client=client, n_estimators=settings["max_iter"],
                                       **params)
    model.fit(train[features], train["label"], sample_weight=train["weight"],
              categorical_feature=spec_names or "auto")
    del train  # the last reference: the training rows leave the workers before tuning
    fitted = FittedTrees("lightgbm", model.booster_, settings["max_iter"], [])
    fitted.tuning_costs = [float((counts * cost_matrix).sum())
                           for counts in tuning_confusions(fitted)]
    fitted.iterations = best_iteration(fitted.tuning_costs)
    return fitted


def fits_one_worker(windows: int, features: int, compute: dict) -> bool:
    """Whether the summary features of ``windows`` training windows (about 8 float64 columns
    per readout feature, LightGBM holding about three copies) fit in half a worker."""
    memory = compute["memory_per_worker"]
    per_worker = (psutil.virtual_memory().total / local_workers(compute["workers"], 1)
                  if memory == "auto" else memory * 2**30)
    return windows * features * 8 * 8 * 3 < per_worker / 2
