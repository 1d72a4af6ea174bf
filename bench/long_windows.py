"""Benchmark: an LSTM over long windows, reading every readout or patches of readouts
(``model.max_steps``).

On a generated shape task (``componentx.data.tasks``; by default ``shape-six``: 300 series
of 427 readouts, six motifs anywhere in noise) it trains the default LSTM for a fixed number
of AdamW steps on all series, once per ``max_steps``, and prints the mean training loss over
the last 50 steps at a few points, and the seconds taken. Chance is log(classes).

    python bench/long_windows.py [--task shape-six] [--steps 300] [--max-steps 1000 64 16]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from componentx.data.tasks import TASKS, series
from componentx.sequence.models import ModelConfig, build_model

ROOT = Path(__file__).resolve().parents[1]


def windows(task) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded windows of the task's last ``max_length`` readouts: the channels
    z-scored, and the age of each readout before the last (as the pipeline's age channel)."""
    data, labels = series(task)
    size = task.max_length
    values = np.concatenate(data)
    mean, std = values.mean(axis=0), values.std(axis=0)
    x = np.zeros((len(data), size, task.channels + 1), np.float32)
    lengths = np.zeros(len(data), np.int64)
    for i, readouts in enumerate(data):
        readouts = readouts[-size:]
        n = len(readouts)
        x[i, size - n:, :-1] = (readouts - mean) / std
        x[i, size - n:, -1] = np.arange(n - 1, -1, -1) / 48.0
        lengths[i] = n
    return torch.from_numpy(x), torch.from_numpy(lengths), torch.from_numpy(labels)


def train(task, x, lengths, y, max_steps: int, steps: int) -> tuple[list[float], float]:
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    config = ModelConfig(**{**settings, "max_steps": max_steps}, n_features=x.shape[2],
                         num_classes=task.classes, spec_cardinalities=[], window=x.shape[1])
    torch.manual_seed(0)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    specs = torch.zeros((len(y), 0), dtype=torch.long)
    rng = np.random.default_rng(0)
    losses, start = [], time.perf_counter()
    for _ in range(steps):
        batch = torch.from_numpy(rng.choice(len(y), 64, replace=False))
        loss = torch.nn.functional.cross_entropy(model(x[batch], lengths[batch], specs[batch]),
                                                 y[batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
    return losses, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="shape-six", choices=[t.name for t in TASKS])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--max-steps", type=int, nargs="+", default=[1000, 64, 16])
    args = parser.parse_args()
    task = next(t for t in TASKS if t.name == args.task)
    x, lengths, y = windows(task)
    marks = [m for m in (100, 200, 300, 500, 1000) if m <= args.steps]
    print(f"{args.task}: {len(y)} series, {task.classes} classes, windows of {x.shape[1]} "
          f"readouts; chance loss {math.log(task.classes):.2f}; {torch.get_num_threads()} "
          "threads\n")
    print("| model.max_steps | readouts per step | LSTM steps | "
          + " | ".join(f"loss at {m}" for m in marks) + " | seconds |")
    print("| --- " * (4 + len(marks)) + "|")
    for max_steps in args.max_steps:
        losses, seconds = train(task, x, lengths, y, max_steps, args.steps)
        patch = -(-x.shape[1] // max_steps)
        print(f"| {max_steps} | {patch} | {-(-x.shape[1] // patch)} | "
              + " | ".join(f"{np.mean(losses[m - 50:m]):.2f}" for m in marks)
              + f" | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
