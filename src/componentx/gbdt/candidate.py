"""The GBDT candidate: boosted trees on summary features of each window and the vehicle's
history up to its reference readout (:mod:`componentx.gbdt.features`), kept at the iteration
with the lowest smoothed expected cost on the windows it tunes on.

Saved as data: the trees (LightGBM's text format, or scikit-learn's in skops format) and
``gbdt.json``. No torch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from componentx.candidates.interface import (
    Candidate,
    FitData,
    LabelledWindows,
    Windows,
    bucket_task,
)
from componentx.compute import SCHEDULER_VARIABLE, absolute, map_tasks
from componentx.decisions.priors import class_priors, class_weights, training_priors
from componentx.errors import BundleError
from componentx.gbdt.features import summary_features, use_window_stats
from componentx.gbdt.model import (
    LIGHTGBM_FILE,
    SMOOTHING,
    FittedTrees,
    fit_lightgbm_on_cluster,
    fit_trees,
    fit_tuned_trees,
    fits_one_worker,
    resolve_size_settings,
    staged_confusions,
)

log = logging.getLogger(__name__)
META = "gbdt.json"


def window_features(windows: Windows, feature_names: list[str], spec_names: list[str], k: int,
                    window_stats: bool) -> pd.DataFrame:
    """:func:`~componentx.gbdt.features.summary_features` of one bucket's windows, float64."""
    readouts = windows.readouts
    return summary_features(readouts.values, readouts.times, readouts.vehicles,
                            pd.DataFrame({"end_row": windows.end_row, "length": windows.length}),
                            feature_names, k, windows.specs, spec_names, window_stats)


def labelled_features(windows: Windows, labels: np.ndarray, weights: np.ndarray | None,
                      *settings: Any) -> pd.DataFrame:
    """:func:`window_features` with each window's ``label`` and class ``weight``: one
    partition of the training rows of LightGBM's Dask interface (a task)."""
    return window_features(windows, *settings).assign(
        label=labels.astype(np.float64), weight=1.0 if weights is None else weights[labels])


def bucket_confusions(windows: Windows, labels: np.ndarray, model_file: Path,
                      train_priors: np.ndarray, target_priors: np.ndarray,
                      cost_matrix: np.ndarray, *settings: Any) -> np.ndarray:
    """:func:`~componentx.gbdt.model.staged_confusions` (iterations, classes, classes) of one
    bucket's tuning windows (``labels``) by the LightGBM trees in ``model_file`` (a task)."""
    import lightgbm

    trees = FittedTrees("lightgbm", lightgbm.Booster(model_file=str(model_file)), 0, [])
    return staged_confusions(trees, window_features(windows, *settings), labels,
                             train_priors, target_priors, cost_matrix)


def no_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame's columns and types without its rows (a task: a partition's schema)."""
    return frame.iloc[:0]


class GBDT(Candidate):
    """Gradient-boosted trees (``params.gbdt``) on summary features."""

    sections = ("gbdt",)
    tunes = True

    def __init__(self, params: dict) -> None:
        super().__init__(params)
        self.settings = params.get("gbdt", {})

    def _feature_settings(self) -> tuple:
        return self.feature_names, self.spec_names, self.k, self.window_stats

    def features(self, windows: LabelledWindows, client: Any) -> pd.DataFrame:
        """The summary features of labelled windows, bucket by bucket (on ``client``'s
        cluster, or here), in the windows' order."""
        parts = windows.map_buckets(window_features, self._feature_settings(), client,
                                    "summary features")
        names = list(parts[0][1].columns)
        values = np.empty((len(windows), len(names)))
        for rows, table in parts:
            values[rows] = table.to_numpy()
        return pd.DataFrame(values, columns=names, copy=False)

    def fit(self, data: FitData) -> GBDT:
        settings, summary = self.settings, data.data.summary
        labels, k = data.fit.labels, data.num_classes
        self.num_classes, self.k = k, settings["k"]
        self.feature_names, self.spec_names = summary.feature_columns, summary.spec_columns
        self.library = settings["library"]
        weights = class_weights(settings["class_weights"], labels, k, "gbdt.class_weights")
        self.train_priors = training_priors(labels, weights, False, k)
        self.sizes = resolve_size_settings(settings, len(labels))
        compute, client = self.params["compute"], data.client
        self.window_stats = use_window_stats(settings["window_stats"], data.data.windows, client)
        if self.library == "lightgbm" and client is not None and data.tune is not None and (
                os.environ.get(SCHEDULER_VARIABLE) or not fits_one_worker(
                    len(labels), len(self.feature_names), compute)):
            self.trees = fit_lightgbm_on_cluster(
                client, self._dask_frame(client, data.fit, weights),
                lambda trees: self._tuning_confusions(trees, data),
                data.cost_matrix, self.spec_names, self.sizes)
        else:  # in this process
            train = self.features(data.fit, client)
            sample_weight = None if weights is None else weights[labels]
            self.trees = fit_trees(
                train, labels, sample_weight, self.spec_names, self.sizes, settings["max_iter"],
                k) if data.tune is None else fit_tuned_trees(
                train, labels, sample_weight, self.features(data.tune, client), data.tune.labels,
                self.train_priors, data.cost_matrix, self.spec_names, settings)
        if data.tune is None:
            log.info("gbdt (%s): %d windows and no windows to tune on: all %d iterations",
                     self.library, len(labels), self.trees.iterations)
            return self
        costs = self.trees.tuning_costs
        log.info("gbdt (%s): %d windows, leaves of %d or more, %d at most; expected cost on "
                 "the %d tuning windows is lowest after %d of %d iterations (%.0f, smoothed "
                 "over %d)", self.library, len(labels), self.sizes["min_samples_leaf"],
                 self.sizes["max_leaf_nodes"], len(data.tune), self.trees.iterations,
                 len(costs), costs[self.trees.iterations - 1], SMOOTHING)
        return self

    def _dask_frame(self, client: Any, windows: LabelledWindows, weights: np.ndarray | None
                    ) -> Any:
        """The training rows as a Dask DataFrame, a partition per bucket, left on the
        workers (a task carries its own index rows)."""
        import dask.dataframe as dd

        futures = [client.submit(bucket_task, labelled_features, *absolute(
            (windows.data, split, bucket, windows.index.iloc[rows])),
            (windows.labels[rows], weights, *self._feature_settings()), pure=False)
            for split, bucket, rows in windows.groups()]
        return dd.from_delayed(futures, meta=client.submit(no_rows, futures[0]).result())

    def _tuning_confusions(self, trees: FittedTrees, data: FitData) -> np.ndarray:
        """:func:`~componentx.gbdt.model.staged_confusions` of the tuning windows, bucket by
        bucket on the workers (each task reads every iteration of the trees from a file in
        the fit's work folder), summed: their features never reach this process."""
        data.work.mkdir(parents=True, exist_ok=True)
        model_file = data.work / LIGHTGBM_FILE
        trees.model.save_model(str(model_file), num_iteration=-1)  # every iteration
        tune = data.tune
        target_priors = class_priors(tune.labels, data.num_classes)
        parts = map_tasks(data.client, bucket_task, [
            (bucket_confusions, tune.data, split, bucket, tune.index.iloc[rows],
             (tune.labels[rows], model_file, self.train_priors, target_priors,
              data.cost_matrix, *self._feature_settings()))
            for split, bucket, rows in tune.groups()], "gbdt tuning costs")
        return np.sum(parts, axis=0)

    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        return self.trees.logits(window_features(windows, *self._feature_settings()),
                                 self.num_classes)

    def save(self, folder: Path) -> None:
        model_file = self.trees.save(folder)
        (folder / META).write_text(json.dumps({
            "library": self.library, "model_file": model_file,
            "iterations": self.trees.iterations, "tuning_costs": self.trees.tuning_costs,
            "k": self.k, "window_stats": self.window_stats, "num_classes": self.num_classes,
            "feature_names": self.feature_names, "spec_names": self.spec_names,
            "train_priors": self.train_priors.tolist(),
            "sizes": {key: self.sizes[key] for key in ("min_samples_leaf", "max_leaf_nodes")}},
            indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> GBDT:
        try:
            meta = json.loads((Path(folder) / META).read_text())
        except (OSError, ValueError) as error:
            raise BundleError(f"{folder}: the trees' {META} cannot be read ({error})") from None
        if engine not in ("auto", meta["library"]):
            raise BundleError(f"{folder} holds {meta['library']} trees: --engine {engine} "
                              "does not apply (use auto)")
        model = cls({})
        model.trees = FittedTrees.load(Path(folder), meta["library"], meta["iterations"])
        model.trees.tuning_costs = meta["tuning_costs"]
        model.library, model.k, model.window_stats = (meta["library"], meta["k"],
                                                      meta["window_stats"])
        model.num_classes, model.sizes = meta["num_classes"], meta["sizes"]
        model.feature_names, model.spec_names = meta["feature_names"], meta["spec_names"]
        model.train_priors = np.asarray(meta["train_priors"])
        return model

    def describe(self) -> str:
        return (f"Gradient-boosted trees ({self.library}, {self.trees.iterations} iterations) "
                "on summary features of a vehicle's history")

    def report(self) -> dict:
        return {"iterations": self.trees.iterations, "window_stats": self.window_stats,
                **self.sizes}

    def attributions(self, windows: Windows, target: np.ndarray, device: str = "cpu"
                     ) -> tuple[list[str], np.ndarray] | None:
        """LightGBM's per-feature contributions (SHAP values of the trees) to each window's
        ``target`` class score; None for scikit-learn's trees."""
        if self.library != "lightgbm":
            return None
        features = window_features(windows, *self._feature_settings())
        contributions = self.trees.model.predict(features, num_iteration=self.trees.iterations,
                                                 pred_contrib=True)
        per_class = contributions.reshape(len(features), self.num_classes, -1)[:, :, :-1]
        return list(features.columns), per_class[np.arange(len(features)), target]
