"""Shared fixtures and helpers: tiny datasets in the official layout, configs from params.yaml,
small window sets, and a real DVC project in a temporary git repository for end-to-end tests."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from componentx.data import synthetic
from componentx.decisions.metrics import OFFICIAL_COST

ROOT = Path(__file__).resolve().parents[1]
REAL_SAMPLE = ROOT / "tests" / "data" / "scania_component_x_sample_3_vehicles.csv"
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())  # the defaults
COST = np.array(OFFICIAL_COST, dtype=float)


@pytest.fixture(scope="session")
def tiny_csv_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset (60 / 40 / 40 vehicles), generated once per session."""
    out = tmp_path_factory.mktemp("tiny") / "csv"
    synthetic.generate(out, n_train=60, n_validation=40, n_test=40, seed=3, progress=False)
    return out


@pytest.fixture
def dataset(tiny_csv_dataset: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    copy = tmp_path / "dataset"
    shutil.copytree(tiny_csv_dataset, copy)
    return copy


def model_config(**overrides):
    """A ModelConfig: params.yaml's model section with ``overrides`` (and small defaults for
    what the data decide: 5 inputs, 5 classes, one specification of 3 codes, windows of 32)."""
    from componentx.sequence.models import ModelConfig

    return ModelConfig(**{"n_features": 5, "num_classes": 5, "spec_cardinalities": [3],
                          "window": 32, **PARAMS["model"], **overrides})


def train_config(**overrides):
    """A TrainConfig: params.yaml's train section with ``overrides``."""
    from componentx.sequence.config import TrainConfig

    return TrainConfig(**{**PARAMS["train"], **overrides})


def window_set(seed: int, vehicles: int = 120, size: int = 8):
    """Readouts whose last value carries the class, so a model can learn something: 4
    features (5 inputs with the age), one specification of 3 codes."""
    from componentx.data.window_set import WindowSet

    rng = np.random.default_rng(seed)
    per_vehicle = rng.integers(3, 12, vehicles)
    rows = per_vehicle.sum()
    features = rng.normal(size=(rows + 1, 4)).astype(np.float32)
    features[-1] = 0
    ends = np.cumsum(per_vehicle)
    labels = rng.choice(5, vehicles, p=[0.6, 0.1, 0.1, 0.1, 0.1])
    features[ends - 1, 0] += labels
    windows = pd.DataFrame({"vehicle_id": np.arange(vehicles), "ref_time": 0.0,
                            "class_label": labels, "end_row": ends,
                            "length": np.minimum(per_vehicle, size)})
    specs = rng.integers(0, 3, (vehicles, 1))
    return WindowSet([features], [np.zeros(rows)], windows, specs, size)


def rewrite_csv(path: Path, edit) -> None:
    """Apply ``edit(header, body)`` to a CSV file's rows as strings (the header apart) and
    write the rows it returns back."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, body = rows[0], rows[1:]
    body = edit(header, body)
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *body])


def set_csv_cell(path: Path, line: int, column: str, value: str) -> None:
    """Set the cell of ``column`` on a file ``line`` (the header being line 1)."""
    def edit(header, body):
        body[line - 2][header.index(column)] = value
        return body
    rewrite_csv(path, edit)


# End-to-end: the real dvc CLI in a temporary git repository.
PROJECT_FILES = ["dvc.yaml", "params.yaml", "stages", "src", "data/raw/README.md",
                 "promoted/README.md", ".gitignore", ".dvcignore"]
TINY = {
    "synthetic": {"n_train": 150, "n_validation": 80, "n_test": 80},
    "window": {"size": 8},
    "model": {"hidden_size": 8, "head_hidden": 8},
    "train": {"epochs": 2, "batch_size": 64, "min_steps": 0},
    "evaluate": {"bootstrap": 50},
    "explain": {"vehicles": 2},
    # the validation split: cross-validation has its own tests
    "selection": {"cross_validate_below": 0},
    "rocket": {"kernels": 840},
    "multirocket": {"kernels": 168},
}
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
       "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
       "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
       "DVC_NO_ANALYTICS": "1", "COMPONENTX_LOG": "WARNING"}


def sh(repo: Path, *args: str, check: bool = True, env: dict | None = None
       ) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=repo, env=env or ENV, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def dvc(repo: Path, *args: str, check: bool = True, env: dict | None = None
        ) -> subprocess.CompletedProcess:
    return sh(repo, sys.executable, "-m", "dvc", *args, check=check, env=env)


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def set_params(repo: Path, overrides: dict) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    for section, values in overrides.items():
        params[section].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def commit(repo: Path, message: str) -> None:
    sh(repo, "git", "add", "-A")
    sh(repo, "git", "commit", "-q", "-m", message)


def make_repo(path: Path, overrides: dict) -> Path:
    """A new git + DVC project at ``path`` with the project's code and params (``overrides``
    applied), committed once (dvclive needs a commit, as any clone has)."""
    path.mkdir(parents=True)
    for name in PROJECT_FILES:
        source, target = ROOT / name, path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__",
                                                                          "*.egg-info"))
        else:
            shutil.copy(source, target)
    set_params(path, overrides)
    sh(path, "git", "init", "-q", "-b", "main")
    dvc(path, "init", "-q")
    shutil.copy(ROOT / ".dvc" / "config", path / ".dvc" / "config")  # the offline plots page
    dvc(path, "config", "core.autostage", "true")
    commit(path, "project")
    return path
