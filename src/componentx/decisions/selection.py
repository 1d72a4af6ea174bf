"""Where every candidate model is calibrated and compared: the selection windows.

With enough data, on the validation split, as the models are fitted on train. With little
(fewer than ``selection.cross_validate_below`` labelled windows in train and validation
together), a handful of validation series would make both the calibration and the choice
noise, so they use k-fold cross-validation instead: the train and validation windows are cut
into ``selection.folds`` folds, each candidate predicts every fold with a model fitted on the
others (out-of-fold predictions), its calibration is fitted on those, the candidates are
compared on all of them; then each ships its fold models together, or a refit on train and
validation where its fit tunes nothing (:mod:`componentx.candidates.phase`), for the test
split and the bundle. The test split is never used to fit or choose anything.

Folds hold whole vehicles, are stratified by each vehicle's largest class, and a vehicle's
fold is a keyed draw of (seed, split, vehicle): the same for every candidate and stage,
whatever the order or bucketing of the windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from componentx.compute import keyed_hash, keyed_uniform
from componentx.data.windowing import read_window_index
from componentx.errors import UserError

VALIDATION, CROSS_VALIDATION = "validation", "cross_validation"
FOLD_DRAW, INNER_DRAW = 7, 8  # the purpose keys of the fold and inner-split draws
INNER_SHARE = 5  # an inner split tunes on one vehicle in this many


@dataclass
class Selection:
    """The selection windows and how they are used.

    ``mode`` is ``validation`` (``windows`` are the validation windows; ``fold`` is None) or
    ``cross_validation`` (``windows`` are the train windows, then the validation windows, in
    their global orders; ``fold`` (windows,) is each window's fold). ``splits`` names the
    windowing stage's splits the selection windows come from, in order.
    """

    mode: str
    folds: int
    windows: pd.DataFrame
    fold: np.ndarray | None
    splits: tuple[str, ...]

    @property
    def labels(self) -> np.ndarray:
        return self.windows["class_label"].to_numpy()

    @property
    def vehicles(self) -> np.ndarray:
        return self.windows["vehicle_id"].to_numpy()

    @property
    def deployment_labels(self) -> np.ndarray:
        """The labels whose class mix stands for deployment's: the validation split's
        windows, cut like test's (the train windows' reference readouts follow
        ``labels.event_refs``); all selection windows where validation has none."""
        if not self.cross_validated or not (self.windows["split"] == 1).any():
            return self.labels
        return self.labels[self.windows["split"].to_numpy() == 1]

    @property
    def keys(self) -> np.ndarray:
        """Each window's vehicle as :func:`vehicle_keys` of (split, vehicle): the unit of the
        folds, the calibration's cross-fit and the bootstrap."""
        return vehicle_keys(self.windows["split"].to_numpy(), self.vehicles)

    @property
    def cross_validated(self) -> bool:
        return self.mode == CROSS_VALIDATION

    def split_folds(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Per fold: its number, the windows fitted on and the windows predicted (positions
        in ``windows``)."""
        for number in range(self.folds):
            held = self.fold == number
            yield number, np.flatnonzero(~held), np.flatnonzero(held)

    def to_dict(self) -> dict:
        """What the metrics files say about the selection."""
        vehicles = self.windows[["split", "vehicle_id"]].drop_duplicates()
        return {"mode": self.mode, "folds": self.folds, "windows": len(self.windows),
                "vehicles": len(vehicles)}


def vehicle_keys(split: np.ndarray | int, vehicles: np.ndarray) -> np.ndarray:
    """One int64 per (split, vehicle) (split numbered as ``WINDOW_SPLITS``: train 0,
    validation 1, test 2): distinct vehicles of two splits that share an id stay apart."""
    return keyed_hash(np.int64(0xFEE7), split, np.asarray(vehicles)).view(np.int64)


def vehicle_folds(split: np.ndarray, vehicles: np.ndarray, labels: np.ndarray, folds: int,
                  seed: int, purpose: int = FOLD_DRAW) -> np.ndarray:
    """A fold per window: whole vehicles (a vehicle of a split), stratified by the vehicle's
    largest class, in the order of a keyed draw per vehicle, dealt round-robin so every fold
    has its share of every class."""
    frame = pd.DataFrame({"split": split, "vehicle": vehicles, "label": labels})
    groups = frame.groupby(["split", "vehicle"], sort=True)["label"].max().reset_index()
    groups["draw"] = keyed_uniform(seed, purpose, groups["split"].to_numpy(),
                                   groups["vehicle"].to_numpy())
    groups = groups.sort_values(["label", "draw"], kind="stable")
    # dealt one after the other through the strata, so fold sizes differ by one at most
    groups["fold"] = np.arange(len(groups)) % folds
    fold = frame.merge(groups[["split", "vehicle", "fold"]], on=["split", "vehicle"],
                       how="left")["fold"]
    return fold.to_numpy()


def plan_selection(windows: Path, settings: dict) -> Selection:
    """The selection windows of the windowing stage's ``windows`` folder and how they are used
    (``settings`` is ``params.selection``)."""
    train = read_window_index(windows, "train").assign(split=0)
    validation = read_window_index(windows, "validation").assign(split=1)
    if len(train) + len(validation) >= settings["cross_validate_below"]:
        return Selection(VALIDATION, 0, validation, None, ("validation",))
    both = pd.concat([train, validation], ignore_index=True)
    folds = min(settings["folds"], len(both[["split", "vehicle_id"]].drop_duplicates()))
    if folds < 2:
        raise UserError(f"selection: {len(both)} labelled windows in train and validation "
                        "are too few to cross-validate (at least two vehicles)")
    fold = vehicle_folds(both["split"].to_numpy(), both["vehicle_id"].to_numpy(),
                         both["class_label"].to_numpy(), folds, settings["seed"])
    return Selection(CROSS_VALIDATION, folds, both, fold, ("train", "validation"))


def inner_split(split: np.ndarray, vehicles: np.ndarray, labels: np.ndarray, seed: int
                ) -> tuple[np.ndarray, np.ndarray] | None:
    """An inner split of some training windows for a candidate's self-tuned choices: one
    vehicle in :data:`INNER_SHARE` to tune on, the others to fit on (positions), whole
    vehicles, stratified by class and keyed like the folds (:func:`vehicle_folds`); None
    where there are too few vehicles to set one apart."""
    groups = len(pd.DataFrame({"split": split, "vehicle": vehicles}).drop_duplicates())
    if groups < 2:
        return None
    fold = vehicle_folds(split, vehicles, labels, min(INNER_SHARE, groups), seed, INNER_DRAW)
    return np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
