"""Small multichannel classification tasks in the Component X layout, for checking the pipeline
on data unlike the built-in fleet: tens to hundreds of series, 2-10 classes, fixed or variable
lengths, levels rather than cumulative counters, labels per series (``train_labels.csv``).

The class is in *when* something happens: each class puts a bump into one channel at its own
relative position in the series (early for class 0, late for the last class), over noise and
a random level per series. A model that ignores order cannot separate the classes; one that
reads the sequence can, up to the noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from componentx.data.layout import ID, TIME, labels_file, readouts_file


@dataclass(frozen=True)
class Task:
    """One task: sizes, classes, lengths, noise."""

    name: str
    series: int
    classes: int
    min_length: int
    max_length: int
    channels: int = 3
    noise: float = 0.6
    seed: int = 0


TASKS = (
    Task("few-fixed", series=60, classes=4, min_length=24, max_length=24),
    Task("binary-variable", series=120, classes=2, min_length=10, max_length=40, seed=1),
    Task("many-variable", series=360, classes=9, min_length=16, max_length=40, seed=2),
)


def series(task: Task) -> tuple[list[np.ndarray], np.ndarray]:
    """The series (length, channels) and their classes, balanced, in a seeded order."""
    rng = np.random.default_rng(task.seed)
    labels = rng.permutation(np.arange(task.series) % task.classes)
    data = []
    for label in labels:
        length = int(rng.integers(task.min_length, task.max_length + 1))
        steps = np.arange(length) / max(length - 1, 1)
        values = rng.normal(0.0, task.noise, (length, task.channels))
        values += rng.normal(0.0, 1.0, (1, task.channels))  # the series' own level
        centre = (label + 0.5) / task.classes
        bump = np.exp(-(((steps - centre) / 0.08) ** 2)) * 2.5
        values[:, label % task.channels] += bump
        data.append(values)
    return data, labels


def write_task(task: Task, folder: Path, shares: tuple[float, float] = (0.6, 0.2)) -> None:
    """The task as the nine-file layout (train_labels.csv, no specifications), split by series
    into train, validation and test (``shares`` of train and validation)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, labels = series(task)
    cut = np.cumsum(np.round(np.array(shares) * task.series).astype(int))
    splits = {"train": range(0, cut[0]), "validation": range(cut[0], cut[1]),
              "test": range(cut[1], task.series)}
    for split, members in splits.items():
        ids = np.concatenate([np.full(len(data[i]), i) for i in members])
        times = np.concatenate([np.arange(1, len(data[i]) + 1, dtype=float) for i in members])
        values = np.concatenate([data[i] for i in members])
        table = pa.table({ID: ids, TIME: times,
                          **{f"ch_{c}": values[:, c] for c in range(task.channels)}})
        pacsv.write_csv(table, folder / readouts_file(split))
        pacsv.write_csv(pa.table({ID: np.array(list(members)),
                                  "class_label": labels[list(members)]}),
                        folder / labels_file(split))
