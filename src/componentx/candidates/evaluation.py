"""Every candidate calibrated and evaluated alike: on its selection logits (validation, or
out-of-fold) and on test (:func:`~componentx.decisions.evaluation.evaluate_logits`)."""

from __future__ import annotations

import logging

import numpy as np

from componentx.candidates.folders import CandidateFolders
from componentx.candidates.interface import PipelineData
from componentx.candidates.registry import registration
from componentx.data.windowing import WINDOW_SPLITS, read_window_index
from componentx.decisions.evaluation import Evaluation, evaluate_logits
from componentx.decisions.metrics import check_cost_matrix
from componentx.decisions.selection import plan_selection, vehicle_keys
from componentx.errors import UserError

log = logging.getLogger(__name__)


def evaluate_candidate(name: str, params: dict, data: PipelineData,
                       folders: CandidateFolders) -> Evaluation:
    """Candidate ``name`` calibrated on its selection logits and scored there (validation,
    or out-of-fold) and on test, like every candidate (``params.evaluate``); the report also
    says how the selection was made and what the fit chose."""
    fit = folders.fit_report(name)
    selection = plan_selection(data.windows, params["selection"])
    path = folders.logits / f"{name}.npz"
    with np.load(path, allow_pickle=False) as saved:
        logits = {key: saved[key] for key in saved.files}
    if not np.array_equal(logits["selection_vehicles"], selection.vehicles):
        raise UserError(f"{path} holds other windows than the {selection.mode} selection of "
                        f"these params: fit it again (dvc repro fit_{name})")
    test = read_window_index(data.windows, "test")
    cost_matrix = check_cost_matrix(params["evaluate"]["cost_matrix"],
                                    data.summary.num_classes)
    test_vehicles = test["vehicle_id"].to_numpy()
    evaluation = evaluate_logits(
        {"validation": logits["selection"], "test": logits["test"]},
        {"validation": selection.labels, "test": test["class_label"].to_numpy()},
        {"validation": selection.vehicles, "test": test_vehicles},
        logits["train_priors"], cost_matrix, params["evaluate"],
        fit["calibration"][params["evaluate"]["calibration"]], selection.deployment_labels,
        {"validation": selection.keys,
         "test": vehicle_keys(WINDOW_SPLITS.index("test"), test_vehicles)})
    evaluation.report |= {**fit["report"], "selection": selection.to_dict(),
                          "fitted_as": fit["fitted_as"]}
    log.info("%s (%s): calibrated on %d %s windows", registration(name).title,
             fit["description"], len(selection.labels), selection.mode.replace("_", "-"))
    return evaluation
