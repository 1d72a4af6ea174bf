"""A non-sequence baseline: gradient-boosted trees on summary features of the same windows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier

from componentx.windowing import gather_rows


def summary_features(values: np.ndarray, times: np.ndarray, vehicle_ids: np.ndarray,
                     windows: pd.DataFrame, feature_names: list[str], k: int,
                     specs: np.ndarray, spec_names: list[str]) -> pd.DataFrame:
    """One row per window: last values, increments and slopes over the last ``k`` readouts,
    time since the vehicle's first readout, readout count, missing-value counts, specs."""
    if k < 2:
        raise ValueError(f"baseline.k must be at least 2, got {k}")
    end = windows["end_row"].to_numpy()
    recent = np.minimum(windows["length"].to_numpy(), k)
    padded = np.concatenate([np.asarray(values, dtype=np.float64),
                             np.full((1, values.shape[1]), np.nan)])
    rows = gather_rows(end, recent, k, pad_row=len(values))
    first_recent = rows[np.arange(len(rows)), k - recent]
    last = padded[end - 1]
    increment = last - padded[first_recent]
    span = times[end - 1] - times[first_recent]
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(span[:, None] > 0, increment / span[:, None], np.nan)
    vehicle_start = np.searchsorted(vehicle_ids, vehicle_ids[end - 1], side="left")
    real = rows != len(values)
    missing_recent = (np.isnan(padded[rows]) & real[:, :, None]).sum(axis=(1, 2))
    columns = {
        **{f"last_{n}": last[:, j] for j, n in enumerate(feature_names)},
        **{f"increment_{n}": increment[:, j] for j, n in enumerate(feature_names)},
        **{f"slope_{n}": slope[:, j] for j, n in enumerate(feature_names)},
        "time_since_first": times[end - 1] - times[vehicle_start],
        "time_span_recent": span,
        "readouts_so_far": end - vehicle_start,
        "missing_last": np.isnan(last).sum(axis=1),
        "missing_recent": missing_recent,
        **{name: specs[:, j] for j, name in enumerate(spec_names)},
    }
    return pd.DataFrame(columns)


def fit_baseline(features: pd.DataFrame, labels: np.ndarray, sample_weight: np.ndarray | None,
                 spec_names: list[str], seed: int, **params) -> HistGradientBoostingClassifier:
    """HistGradientBoostingClassifier with the specifications as categorical features."""
    categorical = [features.columns.get_loc(name) for name in spec_names]
    model = HistGradientBoostingClassifier(categorical_features=categorical or None,
                                           random_state=seed, **params)
    return model.fit(features, labels, sample_weight=sample_weight)


def baseline_logits(model: HistGradientBoostingClassifier, features: pd.DataFrame,
                    num_classes: int) -> np.ndarray:
    """Log-probabilities for every class (classes unseen in training get a tiny floor)."""
    probs = np.full((len(features), num_classes), 1e-9)
    probs[:, model.classes_] = np.maximum(model.predict_proba(features), 1e-9)
    return np.log(probs / probs.sum(axis=1, keepdims=True))
