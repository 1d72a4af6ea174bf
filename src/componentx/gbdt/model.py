"""The boosted trees: fitted on the summary features, kept at the iteration with the lowest
smoothed validation expected cost, saved as data (never a pickle), and evaluated like every
other model."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
from sklearn.ensemble import HistGradientBoostingClassifier

from componentx.compute import SCHEDULER_VARIABLE, absolute, dask_client, local_workers
from componentx.data.layout import SPLITS, DatasetSummary
from componentx.data.windowing import buckets_of, read_window_index
from componentx.decisions.calibration import softmax
from componentx.decisions.evaluation import Evaluation, evaluate_logits
from componentx.decisions.metrics import check_cost_matrix, total_cost
from componentx.decisions.priors import class_priors, class_weights, shift_priors, training_priors
from componentx.decisions.rules import expected_cost_decision
from componentx.decisions.selection import Selection, plan_selection
from componentx.errors import BundleError
from componentx.gbdt.features import bucket_features, split_features, use_window_stats

log = logging.getLogger(__name__)
SMOOTHING = 9  # boosting iterations averaged when choosing the best one on validation
SKLEARN_FILE = "model.skops"
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


def validation_cost(probs: np.ndarray, y: np.ndarray, train_priors: np.ndarray,
                    cost_matrix: np.ndarray) -> float:
    """Total cost of the expected-cost decisions on validation, the probabilities moved from
    the training priors to validation's (the quantity early stopping watches)."""
    shifted = shift_priors(np.maximum(probs, 1e-9), train_priors,
                           class_priors(y, len(cost_matrix)))
    return total_cost(y, expected_cost_decision(shifted, cost_matrix), cost_matrix)


def best_iteration(costs: Sequence[float], smoothing: int = SMOOTHING) -> int:
    """The number of iterations with the lowest cost averaged over ``smoothing`` neighbours
    (a few failing vehicles make single iterations noisy); the earliest on ties."""
    costs = np.asarray(costs, dtype=float)
    kernel = np.ones(min(smoothing, len(costs)))
    smoothed = np.convolve(costs, kernel, mode="same") / np.convolve(
        np.ones_like(costs), kernel, mode="same")
    return int(np.argmin(smoothed)) + 1


@dataclass
class FittedBaseline:
    """A boosted-tree model, the number of its iterations that validation chose, and whether
    its features include :func:`window_statistics`."""

    library: str
    model: Any  # lightgbm.Booster or sklearn's HistGradientBoostingClassifier
    iterations: int
    validation_costs: list[float]
    window_stats: bool = False

    def probabilities(self, features: pd.DataFrame, num_classes: int) -> np.ndarray:
        if self.library == "lightgbm":
            return self.model.predict(features, num_iteration=self.iterations)
        probs = np.full((len(features), num_classes), 1e-9)
        probs[:, self.model.classes_] = self.model.predict_proba(features)
        return probs

    def logits(self, features: pd.DataFrame, num_classes: int) -> np.ndarray:
        """Log-probabilities for every class (classes unseen in training get a tiny floor)."""
        probs = np.maximum(self.probabilities(features, num_classes), 1e-9)
        return np.log(probs / probs.sum(axis=1, keepdims=True))

    def save(self, folder: Path) -> None:
        """The model as data, never a pickle (LightGBM's text format, or scikit-learn's in
        skops format) and ``baseline.json`` saying what it is."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.library == "lightgbm":
            self.model.save_model(str(folder / "model.txt"), num_iteration=self.iterations)
        else:
            import skops.io

            skops.io.dump(self.model, folder / SKLEARN_FILE)
        (folder / "baseline.json").write_text(json.dumps(
            {"library": self.library, "iterations": self.iterations,
             "validation_costs": self.validation_costs, "window_stats": self.window_stats})
            + "\n")

    @classmethod
    def load(cls, folder: Path) -> FittedBaseline:
        """Read a fitted model as data: a file that would need other code than a
        HistGradientBoostingClassifier's to load is refused (:class:`BundleError`)."""
        meta = json.loads((folder / "baseline.json").read_text())
        if meta["library"] == "lightgbm":
            import lightgbm

            try:
                model = lightgbm.Booster(model_file=str(folder / "model.txt"))
            except lightgbm.basic.LightGBMError as error:
                raise BundleError(f"{folder / 'model.txt'} cannot be loaded ({error})") from None
        else:
            model = _load_sklearn(folder / SKLEARN_FILE)
        return cls(meta["library"], model, meta["iterations"], meta["validation_costs"],
                   meta.get("window_stats", False))


def lightgbm_params(settings: dict, num_classes: int) -> dict:
    """The LightGBM parameters of ``params.baseline`` (sizes resolved)."""
    return {"objective": "multiclass", "num_class": num_classes,
            "learning_rate": settings["learning_rate"], "num_leaves": settings["max_leaf_nodes"],
            "min_data_in_leaf": settings["min_samples_leaf"],
            "lambda_l2": settings["l2_regularization"], "seed": settings["seed"],
            "deterministic": True, "force_row_wise": True, "verbosity": -1,
            # every core (Dask's workers ask for one OpenMP thread through the environment,
            # which would otherwise reach this process too)
            "num_threads": os.cpu_count() or 1}


def fit_baseline(train: pd.DataFrame, train_y: np.ndarray, sample_weight: np.ndarray | None,
                 validation: pd.DataFrame, val_y: np.ndarray, train_priors: np.ndarray,
                 cost_matrix: np.ndarray, spec_names: list[str], settings: dict
                 ) -> FittedBaseline:
    """Boosted trees (``settings`` is ``params.baseline``) with the specifications as
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
        return FittedBaseline("lightgbm", booster, best_iteration(costs), costs)
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
              ) -> FittedBaseline:
    """Exactly ``iterations`` boosting iterations (no early stopping), sizes of
    ``settings`` resolved."""
    if settings["library"] == "lightgbm":
        import lightgbm

        booster = lightgbm.train(
            lightgbm_params(settings, num_classes),
            lightgbm.Dataset(train, train_y, weight=sample_weight,
                             categorical_feature=spec_names or "auto"),
            num_boost_round=iterations)
        return FittedBaseline("lightgbm", booster, iterations, [])
    model = _sklearn_trees(settings, spec_names, train, iterations).fit(
        train, train_y, sample_weight=sample_weight)
    return FittedBaseline("sklearn", model, iterations, [])


def staged_probabilities(fitted: FittedBaseline, features: pd.DataFrame, num_classes: int
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
                 ) -> FittedBaseline:
    num_classes = len(cost_matrix)
    fitted = fit_trees(train, train_y, sample_weight, spec_names, settings, settings["max_iter"],
                       num_classes)
    costs = [validation_cost(probs, val_y, train_priors, cost_matrix)
             for probs in staged_probabilities(fitted, validation, num_classes)]
    best = best_iteration(costs)
    if best < fitted.model.n_iter_:
        fitted = fit_trees(train, train_y, sample_weight, spec_names, settings, best,
                           num_classes)
    return FittedBaseline("sklearn", fitted.model, best, costs)


def cross_validate_trees(features: pd.DataFrame, selection: Selection,
                         weights: np.ndarray | None, train_priors: np.ndarray,
                         cost_matrix: np.ndarray, spec_names: list[str], settings: dict
                         ) -> tuple[FittedBaseline, np.ndarray]:
    """Out-of-fold logits of the selection windows (``features``, in their order) and the
    trees refitted on all of them. Each fold grows ``max_iter`` iterations on the others;
    the iteration is chosen once, by today's rule, on the pooled out-of-fold cost of every
    iteration, and the refit grows that many."""
    y, num_classes = selection.labels, len(cost_matrix)
    staged = np.zeros((settings["max_iter"], len(y), num_classes))
    for _, fitted_on, held in selection.split_folds():
        fold = fit_trees(features.iloc[fitted_on], y[fitted_on],
                         None if weights is None else weights[y[fitted_on]], spec_names,
                         resolve_size_settings(settings, len(fitted_on)), settings["max_iter"],
                         num_classes)
        iteration = 0
        for iteration, probs in enumerate(staged_probabilities(fold, features.iloc[held],
                                                               num_classes)):
            staged[iteration][held] = probs
        staged[iteration + 1:, held] = staged[iteration][held]  # trees that could not grow
    costs = [validation_cost(probs, y, train_priors, cost_matrix) for probs in staged]
    best = best_iteration(costs)
    refit = fit_trees(features, y, None if weights is None else weights[y], spec_names,
                      resolve_size_settings(settings, len(y)), best, num_classes)
    refit.validation_costs = costs
    probs = np.maximum(staged[best - 1], 1e-9)
    return refit, np.log(probs / probs.sum(axis=1, keepdims=True))


def fit_lightgbm_on_cluster(client: Any, train: Any, validation: pd.DataFrame,
                            val_y: np.ndarray, train_priors: np.ndarray,
                            cost_matrix: np.ndarray, spec_names: list[str], settings: dict
                            ) -> FittedBaseline:
    """The LightGBM fit of :func:`fit_baseline` with LightGBM's Dask interface, on the
    workers that hold ``train`` (a Dask DataFrame of the features with ``label`` and
    ``weight`` columns). That interface has no early stopping: all ``max_iter`` trees are
    grown, then the validation cost is replayed iteration by iteration and the same rule
    chooses the iteration."""
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
    fitted = FittedBaseline("lightgbm", model.booster_, settings["max_iter"], [])
    fitted.validation_costs = [
        validation_cost(probs, val_y, train_priors, cost_matrix)
        for probs in staged_probabilities(fitted, validation, len(cost_matrix))]
    fitted.iterations = best_iteration(fitted.validation_costs)
    return fitted


def train_frame_part(windows: Path, ingested: Path, bucket: int, spec_columns: list[str],
                     k: int, window_stats: bool, weights: np.ndarray | None) -> pd.DataFrame:
    """One bucket's training rows for LightGBM's Dask interface: the summary features, the
    ``label`` and its class ``weight`` (a task)."""
    table = bucket_features(windows, ingested, "train", bucket, spec_columns, k, window_stats,
                            None)
    y = read_window_index(windows, "train")["class_label"].to_numpy()[table["position"]]
    return table.drop(columns="position").assign(
        label=y.astype(np.float64), weight=1.0 if weights is None else weights[y])


def fits_one_worker(windows: int, features: int, compute: dict) -> bool:
    """Whether the summary features of ``windows`` training windows (about 8 float64 columns
    per readout feature, LightGBM holding about three copies) fit in half a worker."""
    memory = compute["memory_per_worker"]
    per_worker = (psutil.virtual_memory().total / local_workers(compute["workers"], 1)
                  if memory == "auto" else memory * 2**30)
    return windows * features * 8 * 8 * 3 < per_worker / 2


def fit_and_evaluate(ingested: Path, windows: Path, settings: dict, evaluate: dict,
                     compute: dict, selection_settings: dict
                     ) -> tuple[FittedBaseline, Evaluation]:
    """Fit the trees on the summary features and evaluate them through the same calibration
    and decisions as every model (``settings`` is ``params.baseline``, ``evaluate``
    ``params.evaluate``, ``selection_settings`` ``params.selection``): fitted on train with
    the iteration chosen on validation, or, cross-validated (small data), fold by fold with
    the iteration chosen on the pooled out-of-fold cost and refitted on train and validation.
    Features are built bucket by bucket on the cluster (``compute`` is ``params.compute``);
    LightGBM trains there too, with its Dask interface, when a cluster is named
    (``DASK_SCHEDULER_ADDRESS``) or the features would not fit in one worker, else in this
    process. The report also holds the iteration and the tree sizes."""
    summary = DatasetSummary.load(ingested / "schema.json")
    num_classes, specs = summary.num_classes, summary.spec_columns
    cost_matrix = check_cost_matrix(evaluate["cost_matrix"], num_classes)
    selection = plan_selection(windows, selection_settings)
    index = {split: read_window_index(windows, split) for split in SPLITS}
    fit_labels = (selection.labels if selection.cross_validated
                  else index["train"]["class_label"].to_numpy())
    weights = class_weights(settings["class_weights"], fit_labels, num_classes,
                            "baseline.class_weights")
    priors = training_priors(fit_labels, weights, False, num_classes)
    sizes = resolve_size_settings(settings, len(fit_labels))
    fitted = None
    with dask_client(compute, buckets_of(windows)) as client:
        window_stats = use_window_stats(settings["window_stats"], windows, client)
        features = {split: split_features(windows, ingested, split, specs, settings["k"],
                                          window_stats, client)[0]
                    for split in ("validation", "test")}
        if settings["library"] == "lightgbm" and client is not None and \
                not selection.cross_validated and (
                os.environ.get(SCHEDULER_VARIABLE) or not fits_one_worker(
                    len(fit_labels), len(summary.feature_columns), compute)):
            fitted = fit_lightgbm_on_cluster(
                client, _train_frame(client, windows, ingested, specs, settings["k"],
                                     window_stats, weights),
                features["validation"], index["validation"]["class_label"].to_numpy(),
                priors, cost_matrix, specs, sizes)
        else:
            features["train"] = split_features(windows, ingested, "train", specs, settings["k"],
                                               window_stats, client)[0]
    if selection.cross_validated:  # in this process, the cluster closed
        fitted, selection_logits = cross_validate_trees(
            pd.concat([features["train"], features["validation"]], ignore_index=True),
            selection, weights, priors, cost_matrix, specs, settings)
    else:
        if fitted is None:
            fitted = fit_baseline(features["train"], fit_labels,
                                  None if weights is None else weights[fit_labels],
                                  features["validation"], selection.labels, priors,
                                  cost_matrix, specs, settings)
        selection_logits = fitted.logits(features["validation"], num_classes)
    fitted.window_stats = window_stats
    log.info("baseline (%s): %d windows, leaves of %d or more, %d at most; %s expected cost "
             "is lowest after %d of %d iterations (%.0f, smoothed over %d)",
             settings["library"], len(fit_labels), sizes["min_samples_leaf"],
             sizes["max_leaf_nodes"], selection.mode.replace("_", "-"), fitted.iterations,
             len(fitted.validation_costs), fitted.validation_costs[fitted.iterations - 1],
             SMOOTHING)
    test = index["test"]
    evaluation = evaluate_logits(
        {"validation": selection_logits, "test": fitted.logits(features["test"], num_classes)},
        {"validation": selection.labels, "test": test["class_label"].to_numpy()},
        {"validation": selection.vehicles, "test": test["vehicle_id"].to_numpy()},
        priors, cost_matrix, evaluate, deployment_labels=selection.deployment_labels)
    evaluation.report |= {"iterations": fitted.iterations, "window_stats": window_stats,
                          **{key: sizes[key] for key in ("min_samples_leaf", "max_leaf_nodes")},
                          "selection": selection.to_dict()}
    return fitted, evaluation


def _train_frame(client: Any, windows: Path, ingested: Path, specs: list[str], k: int,
                 window_stats: bool, weights: np.ndarray | None) -> Any:
    """The training rows as a Dask DataFrame, a partition per bucket, left on the workers."""
    import dask.dataframe as dd

    futures = [client.submit(train_frame_part, *absolute((windows, ingested)), bucket, specs, k,
                             window_stats, weights, pure=False)
               for bucket in range(buckets_of(windows))]
    return dd.from_delayed(futures, meta=futures[0].result().iloc[:0])
