"""The dataset contract: the official SCANIA Component X layout, and what ingest learned.

A dataset is one folder holding, per split, operational readouts, labels and (optionally)
specifications. Train comes with time-to-event (``train_tte.csv``) or, for datasets labelled
per vehicle, ``train_labels.csv``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

SPLITS = ("train", "validation", "test")
ID = "vehicle_id"
TIME = "time_step"
TTE_COLUMNS = (ID, "length_of_study_time_step", "in_study_repair")
LABEL_COLUMNS = (ID, "class_label")
TTE_FILE = "train_tte.csv"


def readouts_file(split: str) -> str:
    return f"{split}_operational_readouts.csv"


def specifications_file(split: str) -> str:
    return f"{split}_specifications.csv"


def labels_file(split: str) -> str:
    return f"{split}_labels.csv"


@dataclass
class DatasetSummary:
    """What ingest learned about a dataset; saved as ``schema.json`` beside the parquet."""

    feature_columns: list[str]
    spec_columns: list[str]
    train_target: str  # "tte" or "labels"
    num_classes: int = 0  # labels.num_classes, or inferred from the data when it is "auto"
    rows: dict[str, int] = field(default_factory=dict)
    vehicles: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    buckets: int = 1  # vehicle buckets (componentx.compute.bucket_of) of every per-row output
    bucket_rows: dict[str, list[int]] = field(default_factory=dict)  # readouts per bucket
    digest: str = ""  # of the readouts' content, for run names (whatever the bucketing)

    def class_windows(self, windows: list[float]) -> list[float] | None:
        """``labels.windows`` where the classes are time windows (train with time-to-event),
        else None: classes are just labels."""
        return list(windows) if self.train_target == "tte" else None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> DatasetSummary:
        return cls(**json.loads(Path(path).read_text()))


def bucket_file(folder: Path, split: str, bucket: int, suffix: str = ".parquet") -> Path:
    """Where a split's bucket of a per-row output lives: ``folder/split/0003.parquet``."""
    return Path(folder) / split / f"{bucket:04d}{suffix}"
