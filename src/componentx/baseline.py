"""A non-sequence baseline: gradient-boosted trees on the summary features that the published
real-data winners use, computed from the same windows and each vehicle's full history up to
the reference readout (never after it).

Features are built from the raw cumulative readouts. Histogram families are the columns
named ``<family>_<bin>`` (two or more bins); every other column is a single quantity (a
counter, for Component X). A value missing at a readout is taken from the vehicle's last
readout that has it, with that readout's time, so rates stay exact across gaps.
"""

from __future__ import annotations

import json
import pickle
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from componentx.decisions import class_priors, expected_cost_decision, shift_priors
from componentx.features import signed_log1p
from componentx.metrics import total_cost
from componentx.windowing import gather_rows

SMOOTHING = 9  # boosting iterations averaged when choosing the best one on validation
LIBRARIES = ("lightgbm", "sklearn")


def families(feature_names: Sequence[str]) -> dict[str, list[int]]:
    """Column indices per family: histograms (``name_<bin>``, two or more columns) keyed by
    ``name``, and single columns keyed by their own name."""
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(feature_names):
        match = re.fullmatch(r"(.+)_(\d+)", name)
        groups.setdefault(match.group(1) if match else name, []).append(j)
    return {family if len(members) > 1 else feature_names[members[0]]: members
            for family, members in groups.items()}


def _take(values: np.ndarray, rows: np.ndarray, members: list[int]) -> np.ndarray:
    """values[rows, members] as float64, NaN where ``rows`` is -1."""
    block = np.asarray(values[np.ix_(np.maximum(rows, 0), members)], dtype=np.float64)
    return np.where(rows[:, None] >= 0, block, np.nan)


def _last_observed(values: np.ndarray, vehicle_ids: np.ndarray, column: int) -> np.ndarray:
    """Per row, the row of the same vehicle's last non-missing value of ``column`` at or
    before it (-1 where there is none)."""
    rows = np.arange(len(vehicle_ids))
    observed = np.where(~np.isnan(values[:, column]), rows, -1)
    last = np.maximum.accumulate(observed)
    vehicle_start = np.searchsorted(vehicle_ids, vehicle_ids, side="left")
    return np.where(last >= vehicle_start, last, -1)


def summary_features(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                     windows: pd.DataFrame, feature_names: list[str], k: int,
                     specs: np.ndarray, spec_names: list[str], window_stats: bool = False
                     ) -> pd.DataFrame:
    """One row per window (reference readout = the window's last readout).

    - ``last_*``: the last known value of every feature;
    - ``rate{1,k,all}_*``: increase per time unit of every single quantity and histogram
      total over the last readout, the last ``k`` readouts and the whole history, and
      ``relative_rate_*``: the recent rate against the vehicle's own lifetime rate;
    - ``share_*``: each histogram bin's share of its family, and ``recent_share_*``: the
      share of the last ``k`` readouts' increase minus the lifetime share;
    - ``missing_*``: the family is missing at the reference readout; time since the first
      readout, since the previous one, readouts so far; the specifications as categories;
    - with ``window_stats``, :func:`window_statistics` of the raw values.
    """
    if k < 2:
        raise ValueError(f"baseline.k must be at least 2, got {k}")
    end = windows["end_row"].to_numpy() - 1  # the reference readout's row
    vehicle_start = np.searchsorted(vehicle_ids, vehicle_ids[end], side="left")
    so_far = end - vehicle_start + 1
    anchors = {"1": np.maximum(end - 1, vehicle_start), "k": end - np.minimum(so_far, k) + 1,
               "all": vehicle_start}
    groups = families(feature_names)
    columns: dict[str, np.ndarray] = {}
    last_value = np.full((len(end), len(feature_names)), np.nan)
    rates: dict[str, dict[str, np.ndarray]] = {}
    increases: dict[str, np.ndarray] = {}
    for family, members in groups.items():
        seen = _last_observed(values, vehicle_ids, members[0])
        at_end = seen[end]
        block_end = _take(values, at_end, members)
        last_value[:, members] = block_end
        total_end = block_end.sum(axis=1)
        rates[family] = {}
        for horizon, anchor in anchors.items():
            at_anchor = seen[anchor]
            usable = (at_anchor >= 0) & (at_end >= 0) & (at_anchor < at_end)
            block_anchor = _take(values, at_anchor, members)
            dt = np.where(usable, times[np.maximum(at_end, 0)] - times[np.maximum(at_anchor, 0)],
                          np.nan)
            increase = np.where(usable[:, None], block_end - block_anchor, np.nan)
            with np.errstate(invalid="ignore", divide="ignore"):
                rates[family][horizon] = increase.sum(axis=1) / dt
                if len(members) > 1:  # every bin's own rate too
                    for i, j in enumerate(members):
                        columns[f"rate{horizon}_{feature_names[j]}"] = increase[:, i] / dt
            if horizon == "k" and len(members) > 1:
                increases[family] = increase
        if len(members) > 1:
            with np.errstate(invalid="ignore", divide="ignore"):
                share = block_end / total_end[:, None]
                recent = increases[family] / increases[family].sum(axis=1, keepdims=True)
            for i, j in enumerate(members):
                columns[f"share_{feature_names[j]}"] = share[:, i]
                columns[f"recent_share_{feature_names[j]}"] = recent[:, i] - share[:, i]
    for j, name in enumerate(feature_names):
        columns[f"last_{name}"] = last_value[:, j]
    for family, by_horizon in rates.items():
        for horizon, rate in by_horizon.items():
            columns[f"rate{horizon}_{family}"] = rate
        columns[f"relative_rate_{family}"] = (signed_log1p(by_horizon["k"])
                                              - signed_log1p(by_horizon["all"]))
        columns[f"missing_{family}"] = np.isnan(
            _take(values, end, groups[family][:1])[:, 0]).astype(np.int8)
    columns["time_since_first"] = times[end] - times[vehicle_start]
    columns["time_since_previous"] = np.where(so_far > 1, times[end] - times[anchors["1"]],
                                              np.nan)
    columns["readouts_so_far"] = so_far
    if window_stats:
        columns |= window_statistics(values, windows, feature_names)
    for j, name in enumerate(spec_names):
        columns[name] = specs[:, j]
    return pd.DataFrame(columns)


def is_cumulative(values: np.ndarray, vehicle_ids: np.ndarray, threshold: float = 0.95) -> bool:
    """Whether the readouts look cumulative (counters, histograms): at least ``threshold`` of
    the observed steps between a vehicle's consecutive readouts do not decrease."""
    same = vehicle_ids[1:] == vehicle_ids[:-1]
    steps = np.asarray(values[1:], dtype=np.float64)[same] - np.asarray(
        values[:-1], dtype=np.float64)[same]
    observed = ~np.isnan(steps)
    return bool(observed.any() and (steps[observed] >= 0).mean() >= threshold)


def window_statistics(values: np.ndarray, windows: pd.DataFrame, feature_names: list[str]
                      ) -> dict[str, np.ndarray]:
    """Per feature, over each window's readouts: mean, standard deviation, minimum, maximum
    and where the maximum is (0 at the window's first readout, 1 at its last). For readouts
    that are levels rather than cumulative counts, where the shape of the window matters."""
    end, length = windows["end_row"].to_numpy(), windows["length"].to_numpy()
    size = int(length.max()) if len(length) else 1
    rows = gather_rows(end, length, size, pad_row=len(values))
    padded = np.concatenate([np.asarray(values, dtype=np.float64),
                             np.full((1, values.shape[1]), np.nan)])
    block = padded[rows]  # (windows, size, features), NaN outside the window
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns give NaN
        stats = {"mean": np.nanmean(block, axis=1), "std": np.nanstd(block, axis=1),
                 "min": np.nanmin(block, axis=1), "max": np.nanmax(block, axis=1)}
    where = np.argmax(np.where(np.isnan(block), -np.inf, block), axis=1)  # position in window
    first = size - length
    stats["argmax"] = np.where(np.isnan(stats["max"]), np.nan, (where - first[:, None]) / (
        np.maximum(length, 2)[:, None] - 1))
    return {f"window_{kind}_{name}": values_[:, j] for kind, values_ in stats.items()
            for j, name in enumerate(feature_names)}


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
        """The model (LightGBM's text format, or a pickle of scikit-learn's) and what it is."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.library == "lightgbm":
            self.model.save_model(str(folder / "model.txt"), num_iteration=self.iterations)
        else:
            (folder / "model.pkl").write_bytes(pickle.dumps(self.model))
        (folder / "baseline.json").write_text(json.dumps(
            {"library": self.library, "iterations": self.iterations,
             "validation_costs": self.validation_costs, "window_stats": self.window_stats})
            + "\n")

    @classmethod
    def load(cls, folder: Path) -> FittedBaseline:
        meta = json.loads((folder / "baseline.json").read_text())
        if meta["library"] == "lightgbm":
            import lightgbm

            model = lightgbm.Booster(model_file=str(folder / "model.txt"))
        else:
            model = pickle.loads((folder / "model.pkl").read_bytes())  # written by save()
        return cls(meta["library"], model, meta["iterations"], meta["validation_costs"],
                   meta.get("window_stats", False))


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
    library = settings["library"]
    num_classes = len(cost_matrix)
    if library == "lightgbm":
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
            {"objective": "multiclass", "num_class": num_classes,
             "learning_rate": settings["learning_rate"], "num_leaves": settings["max_leaf_nodes"],
             "min_data_in_leaf": settings["min_samples_leaf"],
             "lambda_l2": settings["l2_regularization"], "seed": settings["seed"],
             "deterministic": True, "force_row_wise": True, "verbosity": -1},
            lightgbm.Dataset(train, train_y, weight=sample_weight,
                             categorical_feature=spec_names or "auto", free_raw_data=False),
            num_boost_round=settings["max_iter"],
            valid_sets=[lightgbm.Dataset(validation, val_y, categorical_feature=spec_names
                                         or "auto")],
            feval=expected_cost, callbacks=[stop_without_gain])
        return FittedBaseline(library, booster, best_iteration(costs), costs)
    if library != "sklearn":
        raise ValueError(f"baseline.library must be one of {LIBRARIES}, got {library!r}")
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
    return FittedBaseline(library, model, best, costs)
