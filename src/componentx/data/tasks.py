"""Small classification tasks in the Component X layout, for checking the pipeline on sensor
data unlike the built-in fleet: 60 to 600 labelled series (train and validation), 2 to 52
classes, one to twelve channels, fixed or variable lengths up to 2,000 readouts, levels rather
than cumulative counters, labels per series (``train_labels.csv``); and a test split of its
own size, large enough that telling the candidates apart is not noise.

Two kinds of task. ``when``: each class puts a bump into one channel at its own relative
position in the series (early for class 0, late for the last), so the class is in *when*
something happens. ``shape``: each class is a motif (a sine period, a square wave, a
triangle, a ramp, a chirp, ...) of random amplitude, width and position, in a random channel,
over noise, a random level and a slow drift, so the class is in the *shape* of a pattern and
in nothing else: not its level, place, size or channel.
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
    """One task: labelled series (train and validation) and test series, classes, lengths,
    channels, noise, kind (the pipeline reads windows of ``max_length`` readouts)."""

    name: str
    series: int
    classes: int
    min_length: int
    max_length: int
    channels: int = 3
    noise: float = 0.6
    seed: int = 0
    kind: str = "when"
    test_series: int = 400


TASKS = (
    Task("few-fixed", series=60, classes=4, min_length=24, max_length=24),
    Task("binary-variable", series=120, classes=2, min_length=10, max_length=40, seed=1),
    Task("many-variable", series=360, classes=9, min_length=16, max_length=40, seed=2,
         test_series=450),
    Task("shape-binary-short", series=84, classes=2, min_length=24, max_length=24, channels=1,
         noise=0.8, kind="shape", seed=3),
    Task("shape-few-long", series=60, classes=3, min_length=250, max_length=250, channels=1,
         noise=0.8, kind="shape", seed=4, test_series=300),
    Task("shape-six", series=300, classes=6, min_length=427, max_length=427, channels=1,
         noise=0.8, kind="shape", seed=5, test_series=300),
    Task("shape-long-variable", series=540, classes=10, min_length=200, max_length=1000,
         channels=1, noise=0.8, kind="shape", seed=6, test_series=300),
    Task("shape-channels", series=60, classes=4, min_length=100, max_length=100, channels=6,
         noise=0.8, kind="shape", seed=7),
    Task("shape-channels-variable", series=450, classes=9, min_length=12, max_length=40,
         channels=12, noise=0.5, kind="shape", seed=8, test_series=450),
    # many classes, two labelled series each, long univariate series
    Task("shape-52-long", series=104, classes=52, min_length=2000, max_length=2000, channels=1,
         noise=0.6, kind="shape", seed=9, test_series=520),
)
MOTIFS = ("sine", "square", "triangle", "ramp_up", "ramp_down", "two_bumps", "chirp",
          "step_up", "step_down", "damped", "spike")


def motif(name: str, steps: int, repeats: int = 1) -> np.ndarray:
    """A class's pattern over ``steps`` readouts, the shape ``repeats`` times over: zero mean,
    largest magnitude 1."""
    t = np.linspace(0.0, repeats, steps)
    if repeats > 1:
        t = t - np.floor(t)
    shapes = {
        "sine": np.sin(2 * np.pi * t), "square": np.where(t < 0.5, 1.0, -1.0),
        "triangle": 1 - 2 * np.abs(2 * t - 1), "ramp_up": t, "ramp_down": 1 - t,
        "two_bumps": np.exp(-((t - 0.25) / 0.08) ** 2) + np.exp(-((t - 0.75) / 0.08) ** 2),
        "chirp": np.sin(2 * np.pi * (1 + 3 * t) * t), "step_up": (t > 0.5).astype(float),
        "step_down": (t < 0.5).astype(float),
        "damped": np.exp(-4 * t) * np.sin(6 * np.pi * t),
        "spike": np.exp(-((t - 0.2) / 0.04) ** 2) - 0.4 * np.exp(-((t - 0.6) / 0.2) ** 2)}
    shape = shapes[name] - shapes[name].mean()
    return shape / max(np.abs(shape).max(), 1e-12)


def _shape_series(task: Task, label: int, length: int, rng: np.random.Generator
                  ) -> np.ndarray:
    """Noise, a level and a slow drift per channel, and the class's motif (random amplitude,
    width and position) in a random channel."""
    values = rng.normal(0.0, task.noise, (length, task.channels))
    values += rng.normal(0.0, 1.0, (1, task.channels))
    values += np.cumsum(rng.normal(0.0, 0.02, (length, task.channels)), axis=0)
    width = int(np.clip(round(length * rng.uniform(0.25, 0.45)), 6, length))
    start = int(rng.integers(0, length - width + 1))
    pattern = motif(MOTIFS[label % len(MOTIFS)], width, 1 + label // len(MOTIFS)) * \
        rng.uniform(1.5, 2.5)
    values[start:start + width, int(rng.integers(task.channels))] += pattern
    return values


def series(task: Task) -> tuple[list[np.ndarray], np.ndarray]:
    """The labelled series, then the test series, (length, channels) each, and their
    classes: balanced within each part, in a seeded order."""
    rng = np.random.default_rng(task.seed)
    labels = np.concatenate([rng.permutation(np.arange(task.series) % task.classes),
                             rng.permutation(np.arange(task.test_series) % task.classes)])
    data = []
    for label in labels:
        length = int(rng.integers(task.min_length, task.max_length + 1))
        if task.kind == "shape":
            data.append(_shape_series(task, int(label), length, rng))
            continue
        steps = np.arange(length) / max(length - 1, 1)
        values = rng.normal(0.0, task.noise, (length, task.channels))
        values += rng.normal(0.0, 1.0, (1, task.channels))  # the series' own level
        centre = (label + 0.5) / task.classes
        bump = np.exp(-(((steps - centre) / 0.08) ** 2)) * 2.5
        values[:, label % task.channels] += bump
        data.append(values)
    return data, labels


def write_task(task: Task, folder: Path, train_share: float = 0.75) -> None:
    """The task as the nine-file layout (train_labels.csv, no specifications): the labelled
    series split into train (``train_share``) and validation, then the test series."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data, labels = series(task)
    cut = round(train_share * task.series)
    splits = {"train": range(0, cut), "validation": range(cut, task.series),
              "test": range(task.series, task.series + task.test_series)}
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
