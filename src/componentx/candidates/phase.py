"""The model phase, one path for every candidate: select, fit, score (then
:mod:`componentx.candidates.evaluation` calibrates and evaluates every candidate alike).

:func:`fit_candidate` (the ``fit_<name>`` stages) plans the selection windows
(:mod:`componentx.decisions.selection`): with enough data the candidate is fitted on train
and scored on validation; with few, it is fitted fold by fold and each fold model scores its
held fold (out-of-fold logits). Then what ships is what the gate ranked: a candidate that
tunes itself ships the fold models themselves
(:class:`~componentx.candidates.interface.FoldEnsemble`), since a refit would tune on other
windows; one that tunes nothing (:attr:`~componentx.candidates.interface.Candidate.tunes`
false: the same fit, whatever its windows) ships that ranked fit refitted on every selection
window, as the standard pipelines do (it sees every series, which classes of a few series
need most), calibrated on its folds' out-of-fold logits. Every self-tuned choice (an
early-stopping epoch, a boosting iteration) is made inside each fit, on an inner split of
its own training windows (one vehicle in five, keyed, stratified), by the same rule for every
candidate (:attr:`~componentx.candidates.interface.Candidate.tunes`): never on the windows
the gate ranks. Then the model that ships is saved, and its saved files, read back as its
bundle reads them, score the test windows bucket by bucket on the cluster (and the validation
windows, where it was fitted on train). The model, what the fit
chose and the logits are its outputs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from componentx.candidates.folders import FIT_REPORT, CandidateFolders
from componentx.candidates.interface import (
    Candidate,
    FitData,
    FoldEnsemble,
    LabelledWindows,
    PipelineData,
    Windows,
)
from componentx.candidates.registry import candidate_class, checked, loaded_candidate
from componentx.compute import dask_client
from componentx.data.windowing import buckets_of
from componentx.decisions.metrics import check_cost_matrix
from componentx.decisions.selection import Selection, inner_split, plan_selection
from componentx.devices import resolve_device
from componentx.params import CALIBRATIONS
from componentx.runtime import atomic_dir, atomic_write_bytes, main_process
from componentx.tracking import run_name

log = logging.getLogger(__name__)


def fingerprint(params: dict, sections: tuple[str, ...], data: PipelineData) -> str:
    """Hash of what a fit depends on: its params sections, the window size, cost matrix and
    selection, and the data it reads (an unfinished fit with the same one is resumed)."""
    digest = hashlib.sha256(json.dumps(
        [{s: params[s] for s in sections}, params["window"]["size"],
         params["evaluate"]["cost_matrix"], params["selection"], params["compute"]["device"]],
        sort_keys=True).encode())
    for path in (data.stats, data.ingested / "schema.json", data.pretrained,
                 *(data.windows / f"{s}_windows.parquet" for s in ("train", "validation"))):
        if Path(path).is_file():
            digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def score(model: Candidate, windows: LabelledWindows, device: str) -> np.ndarray:
    """The model's logits (windows, classes) of labelled windows, bucket by bucket, in their
    order."""
    return windows.gather(model.logits, (device,), description="scoring")


def score_saved(name: str, folder: Path, windows: LabelledWindows, device: str,
                client: Any = None) -> np.ndarray:
    """The logits (windows, classes) of labelled windows by candidate ``name`` saved in
    ``folder``, bucket by bucket on ``client``'s cluster or here: a task carries the folder's
    path and its index rows, never a model; each process reads the candidate once."""
    return windows.gather(saved_logits, (name, folder, device), client, f"scoring {name}")


def saved_logits(windows: Windows, name: str, folder: Path, device: str) -> np.ndarray:
    """One bucket's logits (windows, classes) by the candidate saved in ``folder`` (a task)."""
    return loaded_candidate(name, folder).logits(windows, device)


class ModelPhase:
    """One candidate's fits on the pipeline's data (``params``: the whole params file), with
    the stage's Dask ``client`` (None: in this process)."""

    def __init__(self, name: str, params: dict, data: PipelineData,
                 folders: CandidateFolders, live: bool, client: Any = None) -> None:
        self.name, self.params, self.data, self.folders = name, params, data, folders
        self.client = client
        self.cls = candidate_class(name)
        self.num_classes = data.summary.num_classes
        self.cost_matrix = check_cost_matrix(params["evaluate"]["cost_matrix"],
                                             self.num_classes)
        self.key = fingerprint(params, self.cls.sections, data)
        self.run = run_name(data.summary.digest, data.size, name, self.key)
        self.live = folders.live / name if live else None
        self.work = folders.resume / name

    def fit(self, windows: LabelledWindows, tune: LabelledWindows | None, label: str = ""
            ) -> Candidate:
        """A new candidate fitted on ``windows``, tuning on ``tune`` where it tunes itself;
        ``label`` names the fit in its resumable work and fingerprint (empty for the one
        that ships alone); that one, or the first fold's, logs its steps."""
        work = self.work / label if label else self.work
        return self.cls(self.params).fit(FitData(
            windows, tune if self.cls.tunes else None, self.num_classes, self.cost_matrix,
            work, f"{self.key}-{label}" if label else self.key, self.run,
            self.live if label in ("", "fold0") else None, main_process(), self.client))

    def fit_tuned_inside(self, windows: LabelledWindows, label: str = "") -> Candidate:
        """A fit on ``windows`` that tunes, where it does, on an inner split of them."""
        split = inner_split(windows.split_codes, windows.vehicles, windows.labels,
                            self.params["selection"]["seed"]) \
            if self.cls.tunes else None
        if split is None:
            return self.fit(windows, None, label)
        return self.fit(windows.subset(split[0]), windows.subset(split[1]), label)


def fit_processes(name: str, params: dict) -> int:
    """Processes candidate ``name`` fits in (more than one: under torchrun)."""
    return candidate_class(name)(params).processes()


def fit_candidate(name: str, params: dict, data: PipelineData, folders: CandidateFolders,
                  live: bool = False) -> None:
    """Fit candidate ``name`` on the selection plan of ``params.selection`` and write its
    model (``folders.models/{name}``, with ``fit.json``: what it is and chose, the
    calibration its logits need for each ``evaluate.calibration``) and its logits
    (``folders.logits/{name}.npz``: the selection windows', out-of-fold when
    cross-validated, and the test windows'). ``live``: log the
    fit's steps to dvclive (``folders.live/{name}``). Call it in every process of a
    torchrun launch; the main process writes."""
    checked(name, params)
    selection = plan_selection(data.windows, params["selection"])
    fitted_on = len(selection.windows) if selection.cross_validated else len(
        data.labelled("train"))
    reason = candidate_class(name)(params).declines(fitted_on)
    if reason is not None:
        log.info("%s is not fitted: %s", name, reason)
        if main_process():
            write_declined(ModelPhase(name, params, data, folders, live), selection, reason)
        return
    # one cluster for the stage, held by the main process (under torchrun the others train)
    with dask_client(params["compute"], buckets_of(data.windows)) if main_process() \
            else nullcontext() as client:
        phase = ModelPhase(name, params, data, folders, live, client)
        fitted = fit_selection(phase, selection, resolve_device(params["compute"]["device"]))
        if fitted is not None:
            write_fit(phase, *fitted, selection)
            shutil.rmtree(phase.work, ignore_errors=True)


def fit_selection(phase: ModelPhase, selection: Selection, device: str
                  ) -> tuple[Candidate, str, np.ndarray | None, str] | None:
    """The model that ships, what it is (``train``, ``folds`` or ``refit``: see
    :func:`write_fit`), the selection windows' out-of-fold logits (None where it was fitted
    on train) and the device; None in a process of a torchrun launch other than the main."""
    name, data = phase.name, phase.data
    if selection.cross_validated:
        windows = data.labelled(selection.splits)
        selection_logits = np.zeros((len(windows), phase.num_classes))
        members = []
        for number, fitted_on, held in selection.split_folds():
            log.info("%s fold %d/%d: fitting on %d windows, scoring %d", name, number + 1,
                     selection.folds, len(fitted_on), len(held))
            members.append(phase.fit_tuned_inside(windows.subset(fitted_on), f"fold{number}"))
            if main_process():
                selection_logits[held] = score(members[-1], windows.subset(held), device)
        if phase.cls.tunes:
            if not main_process():  # under torchrun only the main process holds the models
                return None
            final, fitted_as = FoldEnsemble(members), "folds"
        else:
            log.info("%s: refitting on all %d selection windows", name, len(windows))
            final, fitted_as = phase.fit(windows, None, "refit"), "refit"
    else:
        final, fitted_as = phase.fit_tuned_inside(data.labelled("train")), "train"
        selection_logits = None
    return (final, fitted_as, selection_logits, device) if main_process() else None


def write_declined(phase: ModelPhase, selection: Selection, reason: str) -> None:
    """The fit stage's outputs where the candidate declined its data: ``fit.json`` says why,
    the logits file is empty."""
    with atomic_dir(phase.folders.models / phase.name) as tmp:
        (tmp / FIT_REPORT).write_text(json.dumps({
            "candidate": phase.name, "declined": reason, "selection": selection.to_dict()},
            indent=1) + "\n")
    buffer = io.BytesIO()
    np.savez(buffer, declined=np.array(reason))
    atomic_write_bytes(phase.folders.logits / f"{phase.name}.npz", buffer.getvalue())


def write_fit(phase: ModelPhase, model: Candidate, fitted_as: str,
              selection_logits: np.ndarray | None, device: str, selection: Selection) -> None:
    """The fit stage's outputs, each written atomically: the model, whose saved files, read
    back as its bundle reads them, score the test windows (and the validation windows where
    ``selection_logits`` is None: fitted on train) bucket by bucket on the stage's cluster
    (:func:`score_saved`); ``fit.json``; the logits. ``fitted_as`` says
    what the model is: ``train`` (fitted on train), ``folds`` (the fold models) or ``refit``
    (on every selection window)."""
    folders, name, data = phase.folders, phase.name, phase.data
    with atomic_dir(folders.models / name) as tmp:
        model.save(tmp)
        files = sorted(p.name for p in tmp.iterdir())
        if selection_logits is None:
            selection_logits = score_saved(name, tmp, data.labelled("validation"), device,
                                           phase.client)
        test_logits = score_saved(name, tmp, data.labelled("test"), device, phase.client)
        (tmp / FIT_REPORT).write_text(json.dumps({
            "candidate": name, "description": model.describe(), "report": model.report(),
            "calibration": {method: model.calibration_method(method)
                            for method in CALIBRATIONS},
            "selection": selection.to_dict(), "fitted_as": fitted_as, "fingerprint": phase.key,
            "run": phase.run, "files": files}, indent=1, default=float) + "\n")
    buffer = io.BytesIO()
    np.savez(buffer, selection=np.asarray(selection_logits, dtype=np.float64),
             selection_vehicles=selection.vehicles.astype(np.int64),
             test=np.asarray(test_logits, dtype=np.float64),
             train_priors=np.asarray(model.train_priors, dtype=np.float64))
    atomic_write_bytes(folders.logits / f"{name}.npz", buffer.getvalue())
