"""A small standard model sweep as DVC experiments: architectures × pooling × bidirectional,
sized to the data, run one after another in the workspace (``dvc exp run``), compared on
validation (the table has paired intervals, :mod:`componentx.experiments.compare`), the lowest
validation cost applied with ``dvc exp apply``. Test is reported, never used to choose."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from componentx.errors import UserError
from componentx.runtime import log

if TYPE_CHECKING:
    from componentx.experiments.compare import Experiment

GRID_ARCHS = ("lstm", "cnn_lstm")  # the default grid, a subset of params.ARCHS
GRID_POOLINGS = ("last", "mean")
BIDIRECTIONAL = (False, True)
SMALL_DATA = 2000  # training windows; below, the swept models are half the default width
SMALL_WIDTH = 32  # hidden_size, head_hidden and conv_channels on small data
CANDIDATE = "sequence"  # the candidate the sweep varies, and compares experiments by
TRAIN_WINDOWS = Path("data/windows/train_windows.parquet")


@dataclass(frozen=True)
class Candidate:
    """One experiment of the sweep: its name and its ``-S`` overrides."""

    name: str
    overrides: dict[str, object]

    def set_params(self) -> list[str]:
        args = []
        for key, value in self.overrides.items():
            args += ["-S", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
        return args


def candidates(n_train_windows: int, archs: Sequence[str] = GRID_ARCHS,
               poolings: Sequence[str] = GRID_POOLINGS,
               bidirectional: Sequence[bool] = BIDIRECTIONAL) -> list[Candidate]:
    """The grid, simplest first (full ties on validation go to the earlier one). With fewer than
    ``SMALL_DATA`` training windows every candidate is ``SMALL_WIDTH`` wide."""
    small = n_train_windows < SMALL_DATA
    found = []
    for arch, pooling, both in itertools.product(archs, poolings, bidirectional):
        name = f"sweep-{arch.replace('_', '-')}-{pooling}-{'bi' if both else 'uni'}"
        sizes = {"model.hidden_size": SMALL_WIDTH, "model.head_hidden": SMALL_WIDTH} | (
            {"model.conv_channels": SMALL_WIDTH} if arch == "cnn_lstm" else {})
        found.append(Candidate(name, {"model.arch": arch, "model.pooling": pooling,
                                      "model.bidirectional": both, **(sizes if small else {})}))
    return found


def _dvc(*args: str, cwd: Path | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True,
                            text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise UserError(f"dvc {' '.join(args)} failed:\n{tail}")
    return result.stdout


def train_windows(cwd: Path | None = None) -> int:
    """Training windows of the current data (running the pipeline up to windowing if needed)."""
    import pyarrow.parquet as pq

    path = (cwd or Path()) / TRAIN_WINDOWS
    _dvc("repro", "windowing", cwd=cwd)
    return pq.read_metadata(path).num_rows


def run(found: list[Candidate], cwd: Path | None = None) -> list[str]:
    """Each candidate as a named workspace experiment; an earlier sweep's experiment of the
    same name on this commit is replaced. Returns the names that finished: a candidate that
    fails is logged with DVC's last lines and skipped."""
    from tqdm import tqdm

    existing = set(_dvc("exp", "list", "--name-only", cwd=cwd).split())
    stale = [c.name for c in found if c.name in existing]
    if stale:
        _dvc("exp", "remove", *stale, cwd=cwd)
    finished = []
    for candidate in tqdm(found, desc="sweep", unit="experiment", file=sys.stderr):
        try:
            _dvc("exp", "run", "-n", candidate.name, *candidate.set_params(), cwd=cwd)
            finished.append(candidate.name)
        except UserError as error:
            log.warning("%s failed, skipped: %s", candidate.name, error)
    return finished


def apply(name: str, cwd: Path | None = None) -> None:
    """``dvc exp apply``: the experiment's params, code and outputs into the workspace."""
    _dvc("exp", "apply", name, cwd=cwd)


def pick(experiments: Sequence[Experiment], names: Sequence[str]) -> Experiment:
    """The swept experiment whose sequence model has the lowest validation cost; ties go to
    the lower validation log loss, then to the earlier (simpler) grid point."""
    from componentx.experiments.compare import validation_rank

    swept = [e for name in names for e in experiments if e.name == name]
    if not swept:
        raise UserError("no sweep experiment finished; see dvc exp show")
    return min(swept, key=validation_rank)
