"""The candidate interface: what every model the gate chooses among is, and the windows it
reads.

A candidate is fitted on :class:`FitData` (labelled windows of the pipeline's splits, read
from the data stages' folders), gives the logits of one bucket's :class:`Windows` (raw
readouts, the window index and the specifications: what ``componentx predict``, the fleet
view and the pipeline's own scoring all hand it), is saved to a folder of data files and
loaded from it without running code, and says what it is for its bundle's model card. Like a
scikit-learn estimator, ``__init__`` only reads params; :meth:`Candidate.fit` does the work.
Calibration, decisions and metrics are never a candidate's business: the one path of
:mod:`componentx.candidates.phase` does them the same way for every candidate.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from componentx.compute import map_tasks
from componentx.data.layout import DatasetSummary
from componentx.data.specs import cardinalities, train_vocabularies, vehicle_codes
from componentx.data.window_set import WindowSet, load_window_set
from componentx.data.windowing import WINDOW_SPLITS, read_window_index, readout_arrays
from componentx.errors import BundleError


@dataclass(frozen=True)
class Readouts:
    """One bucket's readouts, sorted by vehicle then time: ``values`` (rows, features) as
    read (float64, NaN where missing, the data's feature columns in order), ``times`` and
    ``vehicles`` (rows,)."""

    values: np.ndarray
    times: np.ndarray
    vehicles: np.ndarray


@dataclass(frozen=True)
class Windows:
    """Windows over one bucket's :class:`Readouts`: window ``i`` holds the ``length[i]``
    readouts before row ``end_row[i]`` (its last one is the reference readout, at
    ``ref_time[i]``), and the vehicle's specification codes ``specs[i]`` (n_specs,), 0 for a
    category never seen in training. Arrays (windows,) int64, float64 and (windows, n_specs)
    int64."""

    readouts: Readouts
    end_row: np.ndarray
    length: np.ndarray
    ref_time: np.ndarray
    specs: np.ndarray

    def __len__(self) -> int:
        return len(self.end_row)

    def take(self, rows: np.ndarray) -> Windows:
        """The windows ``rows`` (positions), in that order, over the same readouts."""
        return Windows(self.readouts, self.end_row[rows], self.length[rows], self.ref_time[rows],
                       self.specs[rows])


@dataclass(frozen=True)
class PipelineData:
    """Where the data stages left their outputs, and the window size (``window.size``)."""

    size: int
    ingested: Path = Path("data/ingested")
    windows: Path = Path("data/windows")
    inputs: Path = Path("data/inputs")
    stats: Path = Path("data/stats.json")
    pretrained: Path = Path("models/pretrained.pt")

    @property
    def summary(self) -> DatasetSummary:
        return DatasetSummary.load(self.ingested / "schema.json")

    def spec_cardinalities(self) -> list[int]:
        """Codes per specification column (the train vocabularies, unknown included)."""
        return cardinalities(train_vocabularies(self.ingested, self.summary.spec_columns))

    def labelled(self, splits: str | Sequence[str]) -> LabelledWindows:
        """The labelled windows of one split, or of several one after the other."""
        splits = [splits] if isinstance(splits, str) else list(splits)
        parts = [read_window_index(self.windows, split) for split in splits]
        return LabelledWindows(self, pd.concat(
            [part.assign(split=split, row=np.arange(len(part)))
             for split, part in zip(splits, parts, strict=True)], ignore_index=True))

    def bucket_windows(self, split: str, bucket: int, index: pd.DataFrame) -> Windows:
        """The windows ``index`` (rows of the split's window index, all in ``bucket``) over
        that bucket's readouts; the fleet holdout's vehicles are train vehicles."""
        values, times, vehicles = readout_arrays(self.windows, split, bucket)
        codes = vehicle_codes(self.ingested, "train" if split == "fleet" else split,
                              self.summary.spec_columns, index["vehicle_id"].to_numpy(), bucket)
        return Windows(Readouts(values, times, vehicles), index["end_row"].to_numpy(),
                       index["length"].to_numpy(), index["ref_time"].to_numpy(), codes)


def bucket_task(function: Callable, data: PipelineData, split: str, bucket: int,
                 index: pd.DataFrame, args: tuple) -> Any:
    """``function(windows, *args)`` of one bucket's windows (a task)."""
    return function(data.bucket_windows(split, bucket, index), *args)


@dataclass
class LabelledWindows:
    """Labelled windows of the pipeline's splits, in a fixed order: ``index`` has a row per
    window (vehicle_id, ref_time, class_label, bucket, end_row, length, and its ``split`` and
    ``row`` there)."""

    data: PipelineData
    index: pd.DataFrame

    def __len__(self) -> int:
        return len(self.index)

    @property
    def labels(self) -> np.ndarray:
        return self.index["class_label"].to_numpy().astype(np.int64)

    @property
    def vehicles(self) -> np.ndarray:
        return self.index["vehicle_id"].to_numpy()

    @property
    def split_codes(self) -> np.ndarray:
        """Each window's split as a number (train 0, validation 1, test 2, fleet 3): with its
        vehicle, the key of the keyed draws (:mod:`componentx.decisions.selection`)."""
        return self.index["split"].map({s: i for i, s in enumerate(WINDOW_SPLITS)}
                                       ).to_numpy(np.int64)

    def subset(self, rows: np.ndarray) -> LabelledWindows:
        """The windows ``rows`` (positions), in that order."""
        return LabelledWindows(self.data, self.index.iloc[rows].reset_index(drop=True))

    def window_set(self) -> WindowSet:
        """These windows over the inputs stage's model inputs, read from disk window by
        window (what the sequence models train on)."""
        splits = list(dict.fromkeys(self.index["split"]))
        full = load_window_set(self.data.windows, self.data.inputs, self.data.ingested, splits,
                               self.data.summary.spec_columns, self.data.size)
        sizes = [len(read_window_index(self.data.windows, split)) for split in splits]
        offset = dict(zip(splits, np.cumsum([0, *sizes[:-1]]), strict=True))
        return full.subset(self.index["split"].map(offset).to_numpy()
                           + self.index["row"].to_numpy())

    def groups(self) -> list[tuple[str, int, np.ndarray]]:
        """(split, bucket, positions) of the windows in each bucket of each split."""
        return [(split, int(bucket), rows) for (split, bucket), rows in
                self.index.groupby(["split", "bucket"], sort=True).indices.items()]

    def map_buckets(self, function: Callable, args: tuple = (), client: Any = None,
                    description: str = "buckets") -> list[tuple[np.ndarray, Any]]:
        """``function(windows, *args)`` of the windows of each bucket (:class:`Windows`), on
        ``client``'s cluster or here; each result with the positions of its windows. A task
        carries paths and its own index rows, never readouts."""
        groups = self.groups()
        results = map_tasks(client, bucket_task, [
            (function, self.data, split, bucket, self.index.iloc[rows], args)
            for split, bucket, rows in groups], description)
        return [(rows, result) for (_, _, rows), result in zip(groups, results, strict=True)]

    def gather(self, function: Callable, args: tuple = (), client: Any = None,
               description: str = "buckets") -> np.ndarray:
        """:meth:`map_buckets` of a function returning one row per window, as one array in
        the windows' order."""
        parts = self.map_buckets(function, args, client, description)
        if not parts:
            raise ValueError("no windows to gather")
        first = np.asarray(parts[0][1])
        out = np.empty((len(self), *first.shape[1:]), dtype=first.dtype)
        for rows, result in parts:
            out[rows] = result
        return out


@dataclass
class FitData:
    """What a candidate is fitted on.

    ``fit`` are the windows to fit on; ``tune`` the windows its self-tuned choices (an
    early-stopping epoch, a boosting iteration) may be made on, never fitted on, or None when
    it must tune within ``fit``. ``work`` is a folder of the candidate's own that survives an
    interrupted stage (resumable work, emptied after a finished one); ``live`` a dvclive
    folder where its stage declares one. ``key`` fingerprints the params and inputs of the
    fit and ``run`` names it for the trackers. ``client`` is the stage's Dask client (None:
    work in this process), for work mapped over the windows' buckets
    (:meth:`LabelledWindows.map_buckets`). Under torchrun every process fits; only the one
    with ``main_process`` writes (and holds the client)."""

    fit: LabelledWindows
    tune: LabelledWindows | None
    num_classes: int
    cost_matrix: np.ndarray
    work: Path
    key: str
    run: str
    live: Path | None = None
    main_process: bool = True
    client: Any = None

    @property
    def data(self) -> PipelineData:
        return self.fit.data


class Candidate(ABC):
    """A model the gate can choose: fitted on labelled windows, scored one bucket of windows
    at a time, saved as data.

    Contract: :meth:`logits` of the same windows gives the same numbers whatever the bucket
    or batch they come in, before and after :meth:`save` and :meth:`load`;
    :attr:`train_priors` are the class priors its logits were fitted under (class weights
    included), which the calibration moves to the deployment priors.
    """

    #: the params sections it reads (its fit's fingerprint)
    sections: ClassVar[tuple[str, ...]] = ()
    #: whether :meth:`fit` makes self-tuned choices on ``FitData.tune`` (else it gets all
    #: its windows in ``fit`` and ``tune`` is None, and cross-validated, it ships a refit on
    #: every selection window rather than its fold models: :mod:`~componentx.candidates.phase`)
    tunes: ClassVar[bool] = False

    train_priors: np.ndarray

    def __init__(self, params: dict) -> None:
        """Read the candidate's params (the whole ``params.yaml``); fit nothing."""
        self.params = params

    @abstractmethod
    def fit(self, data: FitData) -> Candidate:
        """Fit on ``data.fit`` (tuning on ``data.tune`` where given); returns self."""

    @abstractmethod
    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        """Logits (windows, classes) float64 of one bucket's windows, on ``device``."""

    @abstractmethod
    def save(self, folder: Path) -> None:
        """Write the fitted model into the empty ``folder`` as data files (no pickle)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, engine: str = "auto") -> Candidate:
        """The model :meth:`save` wrote, read as data only (a file that would need code to
        load is a :class:`~componentx.errors.BundleError`); ``engine`` is what runs it where
        a candidate has a choice (``componentx predict --engine``)."""

    @abstractmethod
    def describe(self) -> str:
        """What the fitted model is, in a sentence for people (the model card's)."""

    def declines(self, windows: int) -> str | None:
        """Why it will not be fitted on ``windows`` training windows (a measured limit of
        its own, in its params), or None: a declined candidate is logged and left out of the
        gate, the bundles and the fleet view."""
        return None

    def processes(self) -> int:
        """Processes its fit runs in: more than one, under torchrun (every process calls
        :meth:`fit`; one writes)."""
        return 1

    def report(self) -> dict:
        """What the fit chose (sizes, iterations, epochs), for its metrics file."""
        return {}

    def calibration_method(self, requested: str) -> str:
        """The calibration its logits need (``evaluate.calibration`` unless they are not
        prior-shifted posteriors)."""
        return requested

    def attributions(self, windows: Windows, target: np.ndarray, device: str = "cpu"
                     ) -> tuple[list[str], np.ndarray] | None:
        """Why it decided: each window's contribution (windows, inputs) of every named input
        to the logit of its ``target`` class, and the inputs' names; None where the
        candidate has no attributions."""
        return None


class FoldEnsemble(Candidate):
    """The fold models of a cross-validation, shipped together: exactly the models the gate
    ranked out-of-fold (no refit trains anything that was not ranked). Its logits are the
    mean of theirs; saved as a folder per fold (``fold0``, ...) and :data:`META`."""

    META = "ensemble.json"

    def __init__(self, members: list[Candidate]) -> None:
        super().__init__(members[0].params)
        self.members = members
        self.train_priors = np.mean([m.train_priors for m in members], axis=0)

    def fit(self, data: FitData) -> FoldEnsemble:
        raise TypeError("a FoldEnsemble is made of fitted fold models, not fitted itself")

    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        return np.mean([m.logits(windows, device) for m in self.members], axis=0)

    def save(self, folder: Path) -> None:
        for number, member in enumerate(self.members):
            (folder / f"fold{number}").mkdir()
            member.save(folder / f"fold{number}")
        (folder / self.META).write_text(json.dumps({"members": len(self.members)}) + "\n")

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> FoldEnsemble:
        raise TypeError("load a FoldEnsemble with its members' class: "
                        "componentx.candidates.registry.load_candidate")

    @classmethod
    def load_members(cls, folder: Path, member: type[Candidate], engine: str = "auto"
                     ) -> FoldEnsemble:
        """The ensemble saved in ``folder``, each fold model read by ``member.load``."""
        try:
            count = json.loads((Path(folder) / cls.META).read_text())["members"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise BundleError(f"{folder}: {cls.META} cannot be read ({error})") from None
        return cls([member.load(Path(folder) / f"fold{n}", engine) for n in range(count)])

    def describe(self) -> str:
        return (f"{self.members[0].describe()}; the mean of the {len(self.members)} models of "
                "its cross-validation folds")

    def report(self) -> dict:
        return {"folds": [m.report() for m in self.members]}

    def calibration_method(self, requested: str) -> str:
        return self.members[0].calibration_method(requested)

    def attributions(self, windows: Windows, target: np.ndarray, device: str = "cpu"
                     ) -> tuple[list[str], np.ndarray] | None:
        found = [m.attributions(windows, target, device) for m in self.members]
        if any(f is None for f in found):
            return None
        return found[0][0], np.mean([values for _, values in found], axis=0)
