"""Shared fixtures: tiny synthetic datasets in the official layout, and the project root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from componentx import synthetic

ROOT = Path(__file__).resolve().parents[1]
REAL_SAMPLE = ROOT / "tests" / "data" / "scania_component_x_sample_3_vehicles.csv"


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
