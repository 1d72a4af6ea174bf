"""Why did a candidate decide what it did? The inputs behind the decisions of the test
vehicles with the highest failure risk, from the candidate's own attributions
(:meth:`~componentx.candidates.interface.Candidate.attributions`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from componentx.candidates.interface import Candidate, LabelledWindows
from componentx.decisions.rules import failure_risk


def top_features(attributions: np.ndarray, names: list[str], vehicle_ids: np.ndarray,
                 predicted: np.ndarray, k: int) -> pd.DataFrame:
    """The ``k`` inputs with the largest attribution (windows, inputs) per vehicle, by
    magnitude."""
    rows = []
    for i, vehicle in enumerate(vehicle_ids):
        for rank, j in enumerate(np.argsort(-np.abs(attributions[i]), kind="stable")[:k],
                                 start=1):
            rows.append({"vehicle_id": int(vehicle), "predicted": int(predicted[i]),
                         "rank": rank, "feature": names[j],
                         "attribution": float(attributions[i, j])})
    return pd.DataFrame(rows, columns=["vehicle_id", "predicted", "rank", "feature",
                                       "attribution"])


@dataclass
class Explanation:
    """The riskiest test vehicles, their decision and risk, and the top inputs behind each
    (``top``: :func:`top_features`; None where the candidate has no attributions)."""

    vehicles: np.ndarray
    predicted: np.ndarray
    risk: np.ndarray
    top: pd.DataFrame | None


def explain_riskiest(model: Candidate, test: LabelledWindows, predictions: pd.DataFrame,
                     risk_class: int, vehicles: int, k: int) -> Explanation:
    """Attributions of the decided class (class 1 where the decision is 0) for the
    ``vehicles`` test windows of ``predictions`` (the candidate's, in ``test``'s order) with
    the highest failure risk (:func:`~componentx.decisions.rules.failure_risk`)."""
    probs = predictions[[c for c in predictions.columns if c.startswith("prob_")]].to_numpy()
    risk = failure_risk(probs, risk_class)
    chosen = np.argsort(-risk, kind="stable")[:vehicles]
    predicted = predictions["predicted"].to_numpy()[chosen]
    target = np.where(predicted > 0, predicted, 1)
    riskiest = test.subset(chosen)
    found = [(rows, model.attributions(riskiest.data.bucket_windows(split, bucket,
                                                                    riskiest.index.iloc[rows]),
                                       target[rows]))
             for split, bucket, rows in riskiest.groups()]
    if not found or any(result is None for _, result in found):
        return Explanation(riskiest.vehicles, predicted, risk[chosen], None)
    names = found[0][1][0]
    values = np.zeros((len(chosen), len(names)))
    for rows, (_, part) in found:
        values[rows] = part
    return Explanation(riskiest.vehicles, predicted, risk[chosen],
                       top_features(values, names, riskiest.vehicles, predicted, k))
