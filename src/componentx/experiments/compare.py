"""DVC experiments side by side: metrics and changed params from their git refs, and paired
comparisons of their validation predictions (read from the DVC cache with ``dvc.api``).

Each experiment is represented by one of its candidates: the one its gate ships (the
default), or the one named (``componentx compare --candidate sequence``; the sweep compares
its sequence models)."""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from componentx.decisions.metrics import paired_interval, vehicle_costs
from componentx.errors import UserError
from componentx.tracking import flatten


class NotCachedError(LookupError):
    """An experiment's predictions are not in the local DVC cache (a fresh clone)."""


SHIPPED = "shipped"  # compare the candidate each experiment's gate ships


@dataclass
class Experiment:
    """One experiment (or the committed run): where it lives, which candidate stands for it
    and what that one measured (its ``metrics/candidates/{candidate}.json``)."""

    name: str
    ref: str
    params: dict
    report: dict
    gate: dict | None = None
    candidate: str = ""

    def predictions(self, split: str) -> pd.DataFrame:
        """Its candidate's ``data/predictions/{candidate}/{split}.parquet``, from the DVC
        cache."""
        import dvc.api
        from dvc.exceptions import PathMissingError
        from dvc_data.index import DataIndexError

        try:
            with dvc.api.open(f"data/predictions/{self.candidate}/{split}.parquet",
                              rev=self.ref, mode="rb") as f:
                return pd.read_parquet(io.BytesIO(f.read()))
        except (FileNotFoundError, PathMissingError, DataIndexError) as error:
            raise NotCachedError(f"{self.name}: data/predictions not in the DVC cache "
                                 "(dvc pull, or dvc exp pull for experiments)") from error


def _git(*args: str, cwd: Path | None = None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                          check=True).stdout


def changed_params(params: dict, reference: dict) -> dict[str, object]:
    """Params (flattened, ``train.lr``) whose value differs from ``reference``."""
    ours, theirs = flatten(params), flatten(reference)
    return {k: v for k, v in ours.items() if theirs.get(k) != v}


def load(ref: str, name: str | None = None, cwd: Path | None = None,
         candidate: str = SHIPPED) -> Experiment:
    """The experiment at git ``ref``, represented by ``candidate`` (``shipped``: the one its
    gate chose)."""
    params = yaml.safe_load(_git("show", f"{ref}:params.yaml", cwd=cwd))
    gate = json.loads(_git("show", f"{ref}:metrics/gate.json", cwd=cwd))
    chosen = gate["chosen"] if candidate == SHIPPED else candidate
    try:
        report = json.loads(_git("show", f"{ref}:metrics/candidates/{chosen}.json", cwd=cwd))
    except subprocess.CalledProcessError:
        raise UserError(f"{name or ref} has no candidate {chosen!r} (its gate.candidates: "
                        f"{params['gate']['candidates']})") from None
    return Experiment(name or ref, ref, params, report, gate, chosen)


def list_experiments(cwd: Path | None = None, names: list[str] | None = None,
                     candidate: str = SHIPPED) -> list[Experiment]:
    """The committed run (HEAD, when its metrics are committed) and every experiment of HEAD
    (``dvc exp list``), or those in ``names``, each represented by ``candidate``."""
    try:
        head = _git("rev-parse", "HEAD", cwd=cwd).strip()
    except subprocess.CalledProcessError:
        raise UserError("componentx compare needs a git repository with a commit (git init, "
                        "git commit)") from None
    try:
        found = [load("HEAD", "HEAD", cwd, candidate)]
    except subprocess.CalledProcessError:  # a new project: nothing committed to compare with
        found = []
    for line in _git("for-each-ref", "--format=%(refname)", f"refs/exps/{head[:2]}/{head[2:]}",
                     cwd=cwd).split():
        name = line.rsplit("/", 1)[-1]
        if names is None or name in names:
            found.append(load(line, name, cwd, candidate))
    return found


def paired_against(best: Experiment, other: Experiment, split: str, cost_matrix: np.ndarray,
                   n_boot: int, seed: int) -> dict:
    """``other`` minus ``best`` in total cost on the same vehicles, with a paired interval."""
    ours, theirs = other.predictions(split), best.predictions(split)
    if not np.array_equal(ours["vehicle_id"].to_numpy(), theirs["vehicle_id"].to_numpy()):
        raise UserError(f"experiments {other.name} and {best.name} were evaluated on other "
                         f"{split} vehicles; they cannot be compared")
    y = ours["class_label"].to_numpy()
    keys = ours["vehicle_key" if "vehicle_key" in ours else "vehicle_id"].to_numpy()
    return paired_interval(vehicle_costs(y, ours["predicted"].to_numpy(), cost_matrix),
                           vehicle_costs(y, theirs["predicted"].to_numpy(), cost_matrix),
                           n_boot, seed, vehicles=keys)


def validation_rank(experiment: Experiment) -> tuple[float, float]:
    """How experiments are ordered: validation cost, ties broken by validation log loss."""
    validation = experiment.report["validation"]
    return validation["cost_total"], validation.get("log_loss", 0.0)


def comparison_table(experiments: list[Experiment], cost_matrix: np.ndarray, n_boot: int = 1000,
                     seed: int = 0, paired: bool = True) -> tuple[str, Experiment]:
    """Markdown table of experiments, best validation cost first, and the best one.

    Each row: changed params, its candidate's validation cost with its interval, its
    paired differences (same vehicles) to the first experiment (the committed run) and to the
    best ("not cached" where either side's predictions are not in the local DVC cache, "other
    windows" where the two were selected on different windows), every
    candidate's validation cost as the gate ranked them and the one it ships, and test cost,
    which is reported, never used.
    """
    ranked = sorted(experiments, key=validation_rank)
    best, head = ranked[0], experiments[0]
    lines = [f"| experiment | candidate | changed params | validation cost (95% CI) | − "
             f"{head.name}, paired "
             "(95% CI) | − best, paired (95% CI) | candidates, validation cost (gate) | test "
             "cost (reported only) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    def against(other: Experiment, experiment: Experiment) -> str:
        if experiment is other or not paired:
            return "—"
        if experiment.report.get("selection") != other.report.get("selection"):
            return "other windows"  # e.g. cross-validated against validation: no pairs
        try:
            d = paired_against(other, experiment, "validation", cost_matrix, n_boot, seed)
        except NotCachedError:
            return "not cached"
        return f"{d['difference']:+,.0f} ({d['ci'][0]:+,.0f} to {d['ci'][1]:+,.0f})"

    for experiment in ranked:
        validation = experiment.report["validation"]
        low, high = validation["cost_total_ci"]
        gate = experiment.gate
        candidates = "—" if gate is None or "candidates" not in gate else " · ".join(
            f"{row['name']} {row['cost_total']:,.0f}" for row in gate["candidates"]) + \
            f" → ships {gate['ship']}"
        changed = ", ".join(f"{k}={v}" for k, v in changed_params(experiment.params,
                                                                 head.params).items()) or "—"
        lines.append(f"| {experiment.name} | {experiment.candidate} | {changed} | "
                     f"{validation['cost_total']:,.0f} "
                     f"({low:,.0f}–{high:,.0f}) | {against(head, experiment)} | "
                     f"{against(best, experiment)} | {candidates} | "
                     f"{experiment.report['test']['cost_total']:,.0f} |")
    return "\n".join(lines) + "\n", best
