"""Class labels: time to failure binned by class windows, per reference readout; and the fleet
holdout, train vehicles set aside with every readout as a reference, used by no model."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.compute import dask_client, keyed_uniform, map_tasks, positions_by_bucket
from componentx.data.layout import SPLITS, DatasetSummary, bucket_file
from componentx.errors import ParamsError

log = logging.getLogger(__name__)
REFERENCE_DRAW, HOLDOUT_DRAW = 1, 2  # what a keyed draw is for
LABEL_COLUMNS = ["vehicle_id", "ref_time", "class_label", "ttf"]


def check_windows(windows: Sequence[float], num_classes: int) -> np.ndarray:
    edges = np.asarray(windows, dtype=float)
    if len(edges) != num_classes - 1:
        raise ParamsError(f"labels.windows has {len(edges)} edges; labels.num_classes="
                         f"{num_classes} needs {num_classes - 1}")
    if (edges <= 0).any() or (np.diff(edges) <= 0).any():
        raise ParamsError(f"labels.windows must be positive and increasing, got {list(windows)}")
    return edges


def class_from_ttf(ttf: np.ndarray, windows: Sequence[float]) -> np.ndarray:
    """Class of each time to failure: the last class for ttf <= windows[0], 0 beyond the last.

    With windows (6, 12, 24, 48): 0 < ttf <= 6 -> 4, 6 < ttf <= 12 -> 3, ..., ttf > 48 -> 0.
    Times are rounded to 1e-6 so that grid values sit exactly on the boundaries.
    """
    edges = np.asarray(windows, dtype=float)
    position = np.searchsorted(edges, np.round(ttf, 6), side="left")
    return (len(edges) - position).astype(np.int64)


def _first_per_group(keys: list[np.ndarray], draw: np.ndarray, per_group: int) -> np.ndarray:
    """Indices of up to ``per_group`` members of each group of equal keys: those with the
    lowest ``draw`` (a keyed uniform number per row)."""
    n = len(keys[0])
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort((draw, *reversed(keys)))
    sorted_keys = np.stack([k[order] for k in keys], axis=1)
    new_group = np.r_[True, (sorted_keys[1:] != sorted_keys[:-1]).any(axis=1)]
    group_start = np.maximum.accumulate(np.where(new_group, np.arange(n), 0))
    rank = np.arange(n) - group_start
    return np.sort(order[rank < per_group])


def labels_from_tte(vehicle_ids: np.ndarray, times: np.ndarray, tte: pd.DataFrame,
                    windows: Sequence[float], event_refs: str = "one_per_class",
                    censored: str = "known_class0", censored_refs: int = 2, seed: int = 0,
                    test_like_refs: int = 4) -> pd.DataFrame:
    """Train labels from time-to-event.

    Random choices are keyed draws (``seed``, vehicle, readout time): the same readouts are
    chosen whatever else is labelled with them, so labels do not depend on the bucketing.

    ``vehicle_ids``/``times`` are the readouts sorted by vehicle then time. Repaired vehicles
    give one reference readout per class they visit (``one_per_class``, seeded), every
    readout (``all``), or ``test_like_refs`` readouts drawn uniformly (``test_like``: the
    official validation/test cut, repeated). Censored vehicles give up to ``censored_refs``
    random readouts more than ``max(windows)`` before the end of study (``known_class0``),
    one reference at the end of study labelled 0 (``end_of_study``, the original journal's
    policy), or ``test_like_refs`` uniform readouts labelled 0, as validation and test label
    a censored vehicle wherever it is cut (``test_like``).
    """
    draw = keyed_uniform(seed, REFERENCE_DRAW, vehicle_ids, times)
    tte = tte.sort_values("vehicle_id")
    position = np.searchsorted(tte["vehicle_id"].to_numpy(), vehicle_ids)
    study = tte["length_of_study_time_step"].to_numpy()[position]
    repaired = tte["in_study_repair"].to_numpy()[position].astype(bool)
    ttf = study - times
    row_class = class_from_ttf(ttf, windows)

    event_rows = np.flatnonzero(repaired)
    if event_refs == "one_per_class":
        event_rows = event_rows[_first_per_group(
            [vehicle_ids[event_rows], row_class[event_rows]], draw[event_rows], 1)]
    elif event_refs == "test_like":
        event_rows = event_rows[_first_per_group([vehicle_ids[event_rows]], draw[event_rows],
                                                 test_like_refs)]
    events = pd.DataFrame({"vehicle_id": vehicle_ids[event_rows], "ref_time": times[event_rows],
                           "class_label": row_class[event_rows], "ttf": ttf[event_rows]})

    if censored == "known_class0":
        known = np.flatnonzero(~repaired & (np.round(ttf, 6) > max(windows)))
        rows = known[_first_per_group([vehicle_ids[known]], draw[known], censored_refs)]
        censored_labels = pd.DataFrame({"vehicle_id": vehicle_ids[rows], "ref_time": times[rows],
                                        "class_label": 0, "ttf": np.nan})
    elif censored == "test_like":
        rows = np.flatnonzero(~repaired)
        rows = rows[_first_per_group([vehicle_ids[rows]], draw[rows], test_like_refs)]
        censored_labels = pd.DataFrame({"vehicle_id": vehicle_ids[rows], "ref_time": times[rows],
                                        "class_label": 0, "ttf": np.nan})
    else:
        ended = tte[(tte["in_study_repair"] == 0) & tte["vehicle_id"].isin(vehicle_ids)]
        censored_labels = pd.DataFrame({"vehicle_id": ended["vehicle_id"].to_numpy(),
                                        "ref_time": ended["length_of_study_time_step"].to_numpy(),
                                        "class_label": 0, "ttf": np.nan})
    labels = pd.concat([events, censored_labels], ignore_index=True)
    return labels.sort_values(["vehicle_id", "ref_time"], ignore_index=True)[LABEL_COLUMNS]


def labels_at_last_readout(vehicle_ids: np.ndarray, times: np.ndarray,
                           given: pd.DataFrame) -> pd.DataFrame:
    """One label per vehicle at its last readout (validation, test, train_labels.csv)."""
    last = np.r_[vehicle_ids[1:] != vehicle_ids[:-1], True][:len(vehicle_ids)]  # or none
    frame = pd.DataFrame({"vehicle_id": vehicle_ids[last], "ref_time": times[last]})
    frame = frame.merge(given[["vehicle_id", "class_label"]], on="vehicle_id", how="left",
                        validate="one_to_one")
    frame["ttf"] = np.nan
    return frame[LABEL_COLUMNS]


FLEET_COLUMNS = ["vehicle_id", "ref_time", "class_label", "ttf", "repaired", "end"]


def holdout_vehicles(tte: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """Train vehicles set aside for the fleet view: ``fraction`` of the repaired and of the
    censored vehicles (stratified by repair), those with the lowest keyed draw (``seed``,
    vehicle), sorted."""
    chosen = []
    for repaired in (0, 1):
        ids = tte.loc[tte["in_study_repair"] == repaired, "vehicle_id"].to_numpy(np.int64)
        order = np.lexsort((ids, keyed_uniform(seed, HOLDOUT_DRAW, ids)))
        chosen.append(ids[order[:round(fraction * len(ids))]])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def fleet_references(vehicle_ids: np.ndarray, times: np.ndarray, tte: pd.DataFrame,
                     windows: Sequence[float]) -> pd.DataFrame:
    """Every readout of the given vehicles as a reference: its class where known (repaired
    vehicles; censored ones are 0), time to the repair, the repair flag and the time the
    vehicle's study ends (its repair, or the end of observation)."""
    tte = tte.sort_values("vehicle_id")
    position = np.searchsorted(tte["vehicle_id"].to_numpy(), vehicle_ids)
    end = tte["length_of_study_time_step"].to_numpy()[position]
    repaired = tte["in_study_repair"].to_numpy()[position].astype(bool)
    ttf = np.where(repaired, end - times, np.nan)
    return pd.DataFrame({"vehicle_id": vehicle_ids, "ref_time": times,
                         "class_label": np.where(repaired, class_from_ttf(end - times, windows),
                                                 0),
                         "ttf": ttf, "repaired": repaired, "end": end})[FLEET_COLUMNS]


def label_bucket(ingested: Path, split: str, bucket: int, out: Path, settings: dict,
                 windows: np.ndarray | None, held: np.ndarray, num_classes: int
                 ) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The labels of one bucket of a split into ``out/{split}/{bucket}.parquet`` (and, for
    train, the fleet holdout's references into ``out/fleet/{bucket}.parquet``) (a task;
    ``held``: the holdout's vehicles of this bucket, or more). Returns the class counts and
    the holdout's vehicles, repaired vehicles and references in the bucket."""
    readouts = pd.read_parquet(bucket_file(ingested / "readouts", split, bucket),
                               columns=["vehicle_id", "time_step"])
    ids, times = readouts["vehicle_id"].to_numpy(), readouts["time_step"].to_numpy()
    held_out = pd.DataFrame(columns=FLEET_COLUMNS)
    if split == "train" and windows is not None:
        tte = pd.read_parquet(bucket_file(ingested / "tte", split, bucket))
        fleet = np.isin(ids, held)
        held_out = fleet_references(ids[fleet], times[fleet], tte, windows)
        frame = labels_from_tte(ids[~fleet], times[~fleet], tte, windows,
                                settings["event_refs"], settings["censored"],
                                settings["censored_refs"], settings["seed"],
                                settings["test_like_refs"])
    else:
        given = pd.read_parquet(bucket_file(ingested / "labels", split, bucket))
        frame = labels_at_last_readout(ids, times, given)
    for name, table in ((split, frame), ("fleet", held_out)):
        if name == split or split == "train":
            bucket_file(out, name, bucket).parent.mkdir(parents=True, exist_ok=True)
            table.to_parquet(bucket_file(out, name, bucket), index=False)
    repaired = held_out.groupby("vehicle_id")["repaired"].first()
    return (np.bincount(frame["class_label"].to_numpy(np.int64), minlength=num_classes),
            (len(repaired), int(repaired.sum()), len(held_out)))


def label_splits(ingested: Path, out: Path, settings: dict, fleet: dict, compute: dict
                 ) -> dict:
    """Write the labels of an ingested dataset, bucket by bucket: ``out/{split}/{bucket}``
    (one row per reference readout) and ``out/fleet/{bucket}`` (the fleet holdout);
    ``settings`` is ``params.labels``, ``fleet`` ``params.fleet``, ``compute``
    ``params.compute``. Returns the class counts per split and the holdout's size."""
    summary = DatasetSummary.load(ingested / "schema.json")
    windows = (check_windows(settings["windows"], summary.num_classes)
               if summary.train_target == "tte" else None)  # windows only matter with time
    held = np.zeros(0, dtype=np.int64)
    if windows is not None:
        held = holdout_vehicles(pd.read_parquet(ingested / "train_tte.parquet"),
                                fleet["holdout"], fleet["seed"])
    distribution: dict = {}
    held_by_bucket = [held[rows] for rows in positions_by_bucket(held, summary.buckets)]
    with dask_client(compute, summary.buckets) as client:
        for split in SPLITS:
            results = map_tasks(client, label_bucket, [
                (ingested, split, bucket, out, settings, windows, held_by_bucket[bucket],
                 summary.num_classes) for bucket in range(summary.buckets)], f"{split} labels")
            counts = np.sum([r[0] for r in results], axis=0)
            distribution[split] = {f"class_{c}": int(n) for c, n in enumerate(counts)}
            log.info("%s labels: %d, classes %s", split, counts.sum(), distribution[split])
            if split == "train":
                holdout = np.sum([r[1] for r in results], axis=0, dtype=np.int64)
    distribution["fleet"] = dict(zip(("vehicles", "repaired", "readouts"),
                                     (int(n) for n in holdout), strict=True))
    log.info("fleet holdout: %s (no model sees them)", distribution["fleet"])
    return distribution
