"""Benchmark: training throughput of this project's loader and loop against the journal's design.

Both train the same LSTM for one epoch over the same windows in the same run:
- project: readouts normalised once into a contiguous tensor, each batch gathered with one
  index operation (``WindowSet.batch``);
- journal: a ``Dataset`` whose ``__getitem__`` slices one window from the raw readouts,
  normalises it and pads it, batched by a ``DataLoader`` with default collation.

    python bench/train_throughput.py [--windows 13000] [--rows 300000] [--size 32]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from componentx.dataset import AGE_SCALE, WindowSet
from componentx.features import compute_stats, normalise
from componentx.models import ARCHS, ModelConfig, build_model

FEATURES = 210  # the default pipeline: 105 cumulative values + 105 increments


def fleet(rows: int, windows: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vehicles = rows // 50
    ids = np.sort(rng.integers(0, vehicles, rows))
    times = np.concatenate([np.arange((ids == v).sum()) * 4.4 for v in np.unique(ids)])
    values = np.cumsum(rng.gamma(2.0, 100.0, (rows, FEATURES)), axis=0)
    values[rng.random((rows, FEATURES)) < 0.05] = np.nan
    end = rng.integers(1, rows + 1, windows)
    start_of_vehicle = np.searchsorted(ids, ids[end - 1])
    length = np.minimum(end - start_of_vehicle, size)
    meta = pd.DataFrame({"vehicle_id": ids[end - 1], "ref_time": times[end - 1],
                         "class_label": rng.integers(0, 5, windows), "end_row": end,
                         "length": length})
    return ids, times, values, meta


class JournalDataset(Dataset):
    """Per-sample slicing, normalisation and padding, as the original journal's code did."""

    def __init__(self, values, times, meta, stats, size):
        self.values, self.times, self.meta, self.size = values, times, meta, size
        self.mean = np.asarray(stats.mean, dtype=np.float32)
        self.std = np.asarray(stats.std, dtype=np.float32)
        self.counters = stats.is_counter()

    def __len__(self):
        return len(self.meta)

    def __getitem__(self, i):
        row = self.meta.iloc[i]
        end, length = int(row["end_row"]), int(row["length"])
        window = self.values[end - length:end].astype(np.float32)
        window[:, self.counters] = np.sign(window[:, self.counters]) * np.log1p(
            np.abs(window[:, self.counters]))
        window = np.nan_to_num((window - self.mean) / self.std)
        age = (row["ref_time"] - self.times[end - length:end]) / AGE_SCALE
        x = np.zeros((self.size, window.shape[1] + 1), dtype=np.float32)
        x[self.size - length:, :-1] = window
        x[self.size - length:, -1] = age
        return torch.from_numpy(x), length, int(row["class_label"])


def epoch(model, optimizer, batches) -> int:
    loss_fn = nn.CrossEntropyLoss()
    seen = 0
    for x, lengths, specs, y in batches:
        loss = loss_fn(model(x, lengths, specs), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=13_000)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--archs", action="store_true",
                        help="also time one epoch of every architecture with this project's loader")
    args = parser.parse_args()
    ids, times, values, meta = fleet(args.rows, args.windows, args.size)
    names = [str(i) for i in range(FEATURES)]
    stats = compute_stats(values, times, ids, names, names[:8], "cumulative")
    config = ModelConfig(arch="lstm", n_features=FEATURES + 1, num_classes=5)
    no_specs = torch.zeros((args.batch_size, 0), dtype=torch.long)

    start = time.perf_counter()
    features = torch.from_numpy(np.concatenate(
        [normalise(values, times, ids, stats), np.zeros((1, FEATURES), np.float32)]))
    normalise_seconds = time.perf_counter() - start
    windows = WindowSet(features, times, meta, np.zeros((len(meta), 0)), args.size)

    def project_batches():
        order = np.random.default_rng(0).permutation(len(meta))
        for start in range(0, len(order), args.batch_size):
            b = windows.batch(order[start:start + args.batch_size])
            yield b.x, b.lengths, b.specs, b.y

    def journal_batches():
        loader = DataLoader(JournalDataset(values, times, meta, stats, args.size),
                            batch_size=args.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        for x, lengths, y in loader:
            yield x, lengths, no_specs[: len(y)], y

    def loader_only(batches) -> int:
        return sum(len(batch[-1]) for batch in batches)

    results = {}
    for name, batches in (("project", project_batches), ("journal", journal_batches)):
        start = time.perf_counter()
        results[name, "loader"] = loader_only(batches()) / (time.perf_counter() - start)
        torch.manual_seed(0)
        model = build_model(config)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        seen = epoch(model, optimizer, batches())
        results[name, "epoch"] = seen / (time.perf_counter() - start)

    print(f"{args.windows} windows of {args.size} readouts x {FEATURES + 1} inputs, "
          f"batch {args.batch_size}, {torch.get_num_threads()} threads\n")
    print(f"{'windows/s':32} {'project':>10} {'journal':>10} {'ratio':>8}")
    for what, label in (("loader", "loader only (batches built)"),
                        ("epoch", "epoch (loader + LSTM training)")):
        ours, theirs = results["project", what], results["journal", what]
        print(f"{label:32} {ours:>10.0f} {theirs:>10.0f} {ours / theirs:>7.1f}x")
    print(f"\nproject one-off normalisation of {args.rows} readouts: {normalise_seconds:.2f} s "
          "(once per run, not per epoch)")
    if args.archs:
        print(f"\n{'model.arch (defaults of params.yaml)':36} {'windows/s':>10} {'s/epoch':>8}")
        for arch in ARCHS:
            torch.manual_seed(0)
            model = build_model(ModelConfig(arch=arch, n_features=FEATURES + 1, num_classes=5))
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            start = time.perf_counter()
            seen = epoch(model, optimizer, project_batches())
            seconds = time.perf_counter() - start
            print(f"{arch:36} {seen / seconds:>10.0f} {seconds:>8.1f}")


if __name__ == "__main__":
    main()
