"""The boosted trees: fitted on the summary features, kept at the iteration with the lowest
smoothed validation expected cost, saved as data (never a pickle), and evaluated like every
other model."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
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


def _fit_sklearn(train: pd.DataFrame, train_y: np.ndarray, sample_weight: np.ndarray | None,
                 validation: pd.DataFrame, val_y: np.ndarray, train_priors: np.ndarray,
                 cost_matrix: np.ndarray, spec_names: list[str], settings: dict
                 ) -> FittedBaseline:
    num_classes = len(cost_matrix)
    categorical = [train.columns.get_loc(name) for name in spec_names] or None
    hyper = {"learning_rate": settings["learning_rate"],
             "max_leaf_nodes": settings["max_leaf_nodes"],
             "min_samples_leaf": settings["min_samples_leaf"],
             "l2_regularization": settings["l2_regularization"],
             "categorical_features": categorical, "early_stopping": False,
             "random_state": settings["seed"]}
    model = HistGradientBoostingClassifier(max_iter=settings["max_iter"], **hyper).fit(
        train, train_y, sample_weight=sample_weight)
    costs = []
    for staged in model.staged_predict_proba(validation):
        probs = np.full((len(val_y), num_classes), 1e-9)
        probs[:, model.classes_] = staged
        costs.append(validation_cost(probs, val_y, train_priors, cost_matrix))
    best = best_iteration(costs)
    if best < model.n_iter_:
        model = HistGradientBoostingClassifier(max_iter=best, **hyper).fit(
            train, train_y, sample_weight=sample_weight)
    return FittedBaseline("sklearn", model, best, costs)


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
    booster = model.booster_
    raw, costs = np.zeros((len(val_y), len(cost_matrix))), []
    for iteration in range(booster.current_iteration()):
        raw += booster.predict(validation, raw_score=True, start_iteration=iteration,
                               num_iteration=1)
        costs.append(validation_cost(softmax(raw), val_y, train_priors, cost_matrix))
    return FittedBaseline("lightgbm", booster, best_iteration(costs), costs)


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
                     compute: dict) -> tuple[FittedBaseline, Evaluation]:
    """Fit the trees on the train windows' summary features (``settings`` is
    ``params.baseline``), choose the iteration on validation, and evaluate on validation and
    test through the same calibration and decisions as every model (``evaluate`` is
    ``params.evaluate``). Features are built bucket by bucket on the cluster
    (``compute`` is ``params.compute``); LightGBM trains there too, with its Dask interface,
    when a cluster is named (``DASK_SCHEDULER_ADDRESS``) or the features would not fit in one
    worker, else in this process. The report also holds the iteration and the tree sizes."""
    summary = DatasetSummary.load(ingested / "schema.json")
    num_classes, specs = summary.num_classes, summary.spec_columns
    cost_matrix = check_cost_matrix(evaluate["cost_matrix"], num_classes)
    index = {split: read_window_index(windows, split) for split in SPLITS}
    labels = {split: frame["class_label"].to_numpy() for split, frame in index.items()}
    weights = class_weights(settings["class_weights"], labels["train"], num_classes,
                            "baseline.class_weights")
    priors = training_priors(labels["train"], weights, False, num_classes)
    sizes = resolve_size_settings(settings, len(labels["train"]))
    fitted = None
    with dask_client(compute, buckets_of(windows)) as client:
        window_stats = use_window_stats(settings["window_stats"], windows, client)
        features = {split: split_features(windows, ingested, split, specs, settings["k"],
                                          window_stats, client)[0]
                    for split in ("validation", "test")}
        if settings["library"] == "lightgbm" and client is not None and (
                os.environ.get(SCHEDULER_VARIABLE) or not fits_one_worker(
                    len(labels["train"]), len(summary.feature_columns), compute)):
            fitted = fit_lightgbm_on_cluster(
                client, _train_frame(client, windows, ingested, specs, settings["k"],
                                     window_stats, weights),
                features["validation"], labels["validation"], priors, cost_matrix, specs,
                sizes)
        else:
            features["train"] = split_features(windows, ingested, "train", specs, settings["k"],
                                               window_stats, client)[0]
    if fitted is None:  # in this process, the cluster closed
        fitted = fit_baseline(features["train"], labels["train"],
                              None if weights is None else weights[labels["train"]],
                              features["validation"], labels["validation"], priors,
                              cost_matrix, specs, settings)
    fitted.window_stats = window_stats
    log.info("baseline (%s): %d windows, leaves of %d or more, %d at most; validation expected "
             "cost is lowest after %d of %d iterations (%.0f, smoothed over %d)",
             settings["library"], len(labels["train"]), sizes["min_samples_leaf"],
             sizes["max_leaf_nodes"], fitted.iterations, len(fitted.validation_costs),
             fitted.validation_costs[fitted.iterations - 1], SMOOTHING)
    scored = ("validation", "test")
    evaluation = evaluate_logits(
        {s: fitted.logits(features[s], num_classes) for s in scored},
        {s: labels[s] for s in scored}, {s: index[s]["vehicle_id"].to_numpy() for s in scored},
        priors, cost_matrix, evaluate)
    evaluation.report |= {"iterations": fitted.iterations, "window_stats": window_stats,
                          **{key: sizes[key] for key in ("min_samples_leaf", "max_leaf_nodes")}}
    return fitted, evaluation


def _train_frame(client: Any, windows: Path, ingested: Path, specs: list[str], k: int,
                 window_stats: bool, weights: np.ndarray | None) -> Any:
    """The training rows as a Dask DataFrame, a partition per bucket, left on the workers."""
    import dask.dataframe as dd

    futures = [client.submit(train_frame_part, *absolute((windows, ingested)), bucket, specs, k,
                             window_stats, weights, pure=False)
               for bucket in range(buckets_of(windows))]
    return dd.from_delayed(futures, meta=futures[0].result().iloc[:0])
