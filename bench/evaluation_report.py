"""Report: what the evaluation-layer fixes change, on the workspace's last `dvc repro`.

Rows, all scored on the same validation and test vehicles:
- always class 0;
- the GBDT baseline as it was before the fixes (last values, increments and slopes over the
  last 5 readouts; scikit-learn, 200 iterations, no early stopping; calibrated with the old
  formula softmax((z + r) / T));
- the GBDT baseline now (``data/predictions/gbdt``);
- MiniRocket (``data/predictions/rocket``);
- the sequence model calibrated with the old formula, from its saved logits;
- the sequence model now (``data/predictions/sequence``).
Each row gets its total cost with a 95% bootstrap interval and the paired difference against
the baseline now (the same resampled vehicles; negative: cheaper than the baseline).

    dvc repro && python bench/evaluation_report.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from sklearn.ensemble import HistGradientBoostingClassifier

from componentx.data.layout import SPLITS, DatasetSummary
from componentx.data.specs import vehicle_codes
from componentx.data.windowing import gather_rows, read_window_index, readout_arrays
from componentx.decisions.calibration import fit_scaling, softmax
from componentx.decisions.metrics import bootstrap_intervals, paired_interval, vehicle_costs
from componentx.decisions.priors import class_priors, class_weights, training_priors
from componentx.decisions.rules import decide

SPLIT_PAIR = ("validation", "test")


def old_summary_features(values, times, vehicle_ids, windows, names, k, specs, spec_names):
    """The baseline's features before the fixes (commit 79eeee7)."""
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
    return pd.DataFrame({
        **{f"last_{n}": last[:, j] for j, n in enumerate(names)},
        **{f"increment_{n}": increment[:, j] for j, n in enumerate(names)},
        **{f"slope_{n}": slope[:, j] for j, n in enumerate(names)},
        "time_since_first": times[end - 1] - times[vehicle_start],
        "time_span_recent": span,
        "readouts_so_far": end - vehicle_start,
        "missing_last": np.isnan(last).sum(axis=1),
        "missing_recent": (np.isnan(padded[rows]) & real[:, :, None]).sum(axis=(1, 2)),
        **{name: specs[:, j] for j, name in enumerate(spec_names)},
    })


def old_split_features(windows_dir: Path, ingested: Path, split: str, meta: pd.DataFrame,
                       names: list[str], spec_names: list[str]) -> pd.DataFrame:
    """:func:`old_summary_features` of a split's windows (its window index ``meta``), bucket
    by bucket (``end_row`` is a row of the window's bucket), in the index's order."""
    codes = vehicle_codes(ingested, split, spec_names, meta["vehicle_id"].to_numpy())
    bucket = meta["bucket"].to_numpy()
    parts, positions = [], []
    # Buckets holding windows of the split; bucket 0 alone (no rows) when it has none, so the
    # table still has its columns.
    for b in np.unique(bucket).tolist() or [0]:
        mine = np.flatnonzero(bucket == b)
        values, times, vehicle_ids = readout_arrays(windows_dir, split, b)
        parts.append(old_summary_features(values, times, vehicle_ids,
                                          meta.iloc[mine].reset_index(drop=True), names, 5,
                                          codes[mine], spec_names))
        positions.append(mine)
    order = np.argsort(np.concatenate(positions), kind="stable")
    return pd.concat(parts, ignore_index=True).iloc[order].reset_index(drop=True)


def old_calibration(logits: dict, y: dict, train_priors: np.ndarray) -> dict:
    """softmax((z + r) / T), T fitted on validation: the formula before the fix."""
    k = logits["validation"].shape[1]
    ratio = np.log(class_priors(y["validation"], k)) - np.log(train_priors)
    temperature, _ = fit_scaling(logits["validation"] + ratio, y["validation"], np.zeros(k),
                                 False)
    return {s: softmax((logits[s] + ratio) / temperature) for s in SPLIT_PAIR}


def old_baseline(params: dict, cost_matrix: np.ndarray) -> dict[str, np.ndarray]:
    """Decisions of the baseline as it was, on this workspace's windows."""
    windows_dir, ingested = Path("data/windows"), Path("data/ingested")
    names = json.loads((windows_dir / "features.json").read_text())
    specs = DatasetSummary.load(ingested / "schema.json").spec_columns
    data = {}
    for split in SPLITS:
        meta = read_window_index(windows_dir, split)
        data[split] = (old_split_features(windows_dir, ingested, split, meta, names, specs),
                       meta["class_label"].to_numpy())
    num_classes = len(cost_matrix)
    train_x, train_y = data["train"]
    weights = class_weights("inverse", train_y, num_classes)
    model = HistGradientBoostingClassifier(
        max_iter=200, learning_rate=0.05, max_leaf_nodes=31, random_state=0,
        categorical_features=[train_x.columns.get_loc(c) for c in specs] or None,
    ).fit(train_x, train_y, sample_weight=weights[train_y])
    logits = {}
    for split in SPLIT_PAIR:
        probs = np.full((len(data[split][1]), num_classes), 1e-9)
        probs[:, model.classes_] = np.maximum(model.predict_proba(data[split][0]), 1e-9)
        logits[split] = np.log(probs / probs.sum(axis=1, keepdims=True))
    probs = old_calibration(logits, {s: data[s][1] for s in SPLIT_PAIR},
                            training_priors(train_y, weights, False, num_classes))
    return {s: decide(probs[s], "expected_cost", cost_matrix) for s in SPLIT_PAIR}


def main() -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())
    cost_matrix = np.asarray(params["evaluate"]["cost_matrix"], dtype=float)
    n_boot, seed = params["evaluate"]["bootstrap"], params["evaluate"]["seed"]
    ours = {s: pd.read_parquet(f"data/predictions/sequence/{s}.parquet") for s in SPLIT_PAIR}
    theirs = {s: pd.read_parquet(f"data/predictions/gbdt/{s}.parquet") for s in SPLIT_PAIR}
    rocket = {s: pd.read_parquet(f"data/predictions/rocket/{s}.parquet") for s in SPLIT_PAIR}
    y = {s: ours[s]["class_label"].to_numpy() for s in SPLIT_PAIR}
    logit_columns = [c for c in ours["validation"].columns if c.startswith("logit_")]
    logits = {s: ours[s][logit_columns].to_numpy() for s in SPLIT_PAIR}
    with np.load("data/logits/sequence.npz", allow_pickle=False) as saved:
        train_priors = saved["train_priors"]
    old_probs = old_calibration(logits, y, train_priors)
    rows = {
        "always class 0": {s: np.zeros_like(y[s]) for s in SPLIT_PAIR},
        "GBDT baseline as it was": old_baseline(params, cost_matrix),
        "GBDT baseline now": {s: theirs[s]["predicted"].to_numpy() for s in SPLIT_PAIR},
        "MiniRocket": {s: rocket[s]["predicted"].to_numpy() for s in SPLIT_PAIR},
        "sequence model, old calibration softmax((z + r)/T)":
            {s: decide(old_probs[s], "expected_cost", cost_matrix) for s in SPLIT_PAIR},
        "sequence model now": {s: ours[s]["predicted"].to_numpy() for s in SPLIT_PAIR},
    }
    print(f"synthetic.signal={params['synthetic']['signal']} "
          f"strength={params['synthetic']['strength']}, labels.event_refs="
          f"{params['labels']['event_refs']}, labels.censored={params['labels']['censored']}\n")
    print("| model | validation cost (95% CI) | − baseline now, paired (95% CI) | "
          "test cost (95% CI) | − baseline now, paired (95% CI) |")
    print("| --- | --- | --- | --- | --- |")
    reference = rows["GBDT baseline now"]
    for name, predicted in rows.items():
        cells = []
        for s in SPLIT_PAIR:
            costs = vehicle_costs(y[s], predicted[s], cost_matrix)
            low, high = bootstrap_intervals(y[s], predicted[s], cost_matrix, n_boot,
                                            seed)["cost_total_ci"]
            paired = paired_interval(costs, vehicle_costs(y[s], reference[s], cost_matrix),
                                     n_boot, seed)
            cells.append(f"{costs.sum():,.0f} ({low:,.0f}–{high:,.0f})")
            cells.append("—" if predicted is reference else
                         f"{paired['difference']:+,.0f} ({paired['ci'][0]:+,.0f} to "
                         f"{paired['ci'][1]:+,.0f})")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
