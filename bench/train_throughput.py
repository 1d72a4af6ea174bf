"""Benchmark: training throughput per architecture, how close it is to the CPU's peak, and the
journal's design measured in the same run.

- project: readouts normalised once into a contiguous tensor, each batch gathered with one
  index operation by a background thread while the previous batch trains
  (``prefetched_batches``), recurrent layers on the dense kernel (``models.LSTMEncoder``);
- journal: a ``Dataset`` whose ``__getitem__`` slices one window from the raw readouts,
  normalises it and pads it, batched by a ``DataLoader`` with default collation, and the LSTM
  over packed sequences.

FLOPs per window are counted by ``torch.utils.flop_counter`` over one training step
(forward and backward; the LSTM is counted through its matmul decomposition). The peak is
cores x fp32 lanes x 2 (FMA) x FMA units x clock, printed with where each number came from.

    python bench/train_throughput.py [--windows 13000] [--rows 300000] [--size 32]
"""

from __future__ import annotations

import argparse
import os
import re
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from componentx.data.features import AGE_SCALE, compute_stats, normalise
from componentx.data.window_set import WindowSet
from componentx.params import ARCHS
from componentx.sequence.dataset import batch_of, prefetched_batches
from componentx.sequence.models import (
    LSTMEncoder,
    ModelConfig,
    build_model,
    left_to_right_aligned,
    packed_lstm,
)

ROOT = Path(__file__).resolve().parents[1]
FEATURES = 210  # the default pipeline: 105 cumulative values + 105 increments


def fleet(rows: int, windows: int, size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    vehicles = rows // 50
    ids = np.sort(rng.integers(0, vehicles, rows))
    starts = np.searchsorted(ids, ids)
    times = (np.arange(rows) - starts) * 4.4
    values = np.cumsum(rng.gamma(2.0, 100.0, (rows, FEATURES)), axis=0)
    values[rng.random((rows, FEATURES)) < 0.05] = np.nan
    end = rng.integers(1, rows + 1, windows)
    length = np.minimum(end - starts[end - 1], size)
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


class PackedLSTMEncoder(LSTMEncoder):
    """The journal's recurrence: the same LSTM over packed sequences."""

    def forward(self, x, lengths, mask):
        return packed_lstm(self.lstm, x, lengths)


def model_config(arch: str, size: int) -> ModelConfig:
    """``arch`` with params.yaml's ``model`` settings, on this benchmark's inputs."""
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["model"]
    return ModelConfig(**{**settings, "arch": arch}, n_features=FEATURES + 1, num_classes=5,
                       spec_cardinalities=[], window=size)


def journal_model(config: ModelConfig) -> nn.Module:
    model = build_model(config)
    packed = PackedLSTMEncoder(config.n_features, config)
    packed.load_state_dict(model.encoder.state_dict())
    model.encoder = packed
    return model


def train_epoch(model, batches) -> int:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    seen = 0
    for x, lengths, specs, y in batches:
        loss = loss_fn(model(x, lengths, specs), y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        seen += len(y)
    return seen


def flops_per_window(model, x, lengths, specs, y) -> float:
    """Forward + backward FLOPs of one training step, per window (packed LSTMs count only the
    real steps, dense ones the whole window)."""
    with warnings.catch_warnings(), torch.backends.mkldnn.flags(enabled=False), \
            FlopCounterMode(display=False) as counter:
        warnings.simplefilter("ignore")
        nn.functional.cross_entropy(model(x, lengths, specs), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(y)


def cpu_peak(fma_units: int) -> tuple[float, str]:
    """fp32 peak GFLOP/s of the cores torch uses, and how it was derived."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(re.findall(r"^flags\s*:\s*(.*)$", info, re.M)[0].split()) if info else set()
    lanes, isa = (16, "AVX-512") if "avx512f" in flags else (8, "AVX2") if "avx2" in flags \
        else (4, "SSE")
    max_freq = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if max_freq.exists():
        ghz, source = int(max_freq.read_text()) / 1e6, "cpufreq max"
    else:
        mhz = re.findall(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)
        ghz, source = (float(mhz[0]) / 1e3, "/proc/cpuinfo 'cpu MHz'") if mhz else (1.0, "?")
    cores = torch.get_num_threads()
    peak = cores * lanes * 2 * fma_units * ghz
    how = (f"{cores} cores (torch threads) x {lanes} fp32 lanes ({isa}) x 2 (FMA) x {fma_units} "
           f"FMA units/core (--fma-units) x {ghz:.2f} GHz ({source}) = {peak:.0f} GFLOP/s")
    return peak, how


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=13_000)
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--fma-units", type=int, default=2,
                        help="AVX FMA units per core (2 on Xeon Scalable server cores)")
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1)))
    ids, times, values, meta = fleet(args.rows, args.windows, args.size)
    names = [str(i) for i in range(FEATURES)]
    stats = compute_stats(values, times, ids, names, names[:8], "cumulative")
    features = np.concatenate([normalise(values, times, ids, stats),
                               np.zeros((1, FEATURES), np.float32)])
    windows = WindowSet([features], [times], meta, np.zeros((len(meta), 0)), args.size)
    no_specs = torch.zeros((args.batch_size, 0), dtype=torch.long)

    def project_batches():
        order = np.random.default_rng(0).permutation(len(meta))
        chunks = (order[start:start + args.batch_size]
                  for start in range(0, len(order), args.batch_size))
        for b in prefetched_batches(windows, chunks):
            yield b.x, b.lengths, b.specs, b.y

    def journal_batches():
        loader = DataLoader(JournalDataset(values, times, meta, stats, args.size),
                            batch_size=args.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(0))
        for x, lengths, y in loader:
            yield x, lengths, no_specs[: len(y)], y

    def timed(make_model, batches) -> float:
        torch.manual_seed(0)
        train_epoch(make_model(), (batch for _, batch in zip(range(10), batches(),
                                                             strict=False)))  # warm-up
        torch.manual_seed(0)
        model = make_model()
        start = time.perf_counter()
        seen = train_epoch(model, batches())
        return seen / (time.perf_counter() - start)

    peak, how = cpu_peak(args.fma_units)
    sample = batch_of(windows, np.arange(args.batch_size))
    print(f"{args.windows} windows of {args.size} readouts x {FEATURES + 1} inputs, batch "
          f"{args.batch_size}, {torch.get_num_threads()} threads\npeak: {how}\n")

    config = model_config("lstm", args.size)
    journal = timed(lambda: journal_model(config), journal_batches)
    start = time.perf_counter()
    loaded = sum(len(batch[-1]) for batch in project_batches())
    loader = loaded / (time.perf_counter() - start)
    start = time.perf_counter()
    journal_loader = sum(len(batch[-1]) for batch in journal_batches())
    journal_loader = journal_loader / (time.perf_counter() - start)

    with torch.no_grad():
        model = build_model(config).eval()
        mask = torch.arange(args.size)[None, :] < sample.lengths[:, None]
        aligned = left_to_right_aligned(sample.x, sample.lengths)
        gap = (model.encoder(aligned, sample.lengths, mask)
               - packed_lstm(model.encoder.lstm, aligned, sample.lengths)).abs().max().item()

    print(f"{'model.arch (params.yaml defaults)':34} {'windows/s':>9} {'x journal':>9} "
          f"{'MFLOP/window':>12} {'GFLOP/s':>8} {'% peak':>7}")
    for arch in ARCHS:
        arch_config = model_config(arch, args.size)
        rate = timed(lambda c=arch_config: build_model(c), project_batches)
        flops = flops_per_window(build_model(arch_config), sample.x, sample.lengths,
                                 sample.specs, sample.y)
        print(f"{arch:34} {rate:>9.0f} {rate / journal:>8.1f}x {flops / 1e6:>12.1f} "
              f"{rate * flops / 1e9:>8.1f} {100 * rate * flops / 1e9 / peak:>6.1f}%")
    journal_flops = flops_per_window(journal_model(config), sample.x, sample.lengths,
                                     sample.specs, sample.y)
    packed = timed(lambda: journal_model(config), project_batches)
    print(f"{'lstm, packed (before dense kernel)':34} {packed:>9.0f} {packed / journal:>8.1f}x "
          f"{journal_flops / 1e6:>12.1f} {packed * journal_flops / 1e9:>8.1f} "
          f"{100 * packed * journal_flops / 1e9 / peak:>6.1f}%")
    print(f"{'journal (per-sample loader, packed)':34} {journal:>9.0f} {1.0:>8.1f}x "
          f"{journal_flops / 1e6:>12.1f} {journal * journal_flops / 1e9:>8.1f} "
          f"{100 * journal * journal_flops / 1e9 / peak:>6.1f}%")
    print(f"\nloader only (windows/s): project {loader:.0f}, journal {journal_loader:.0f} "
          f"({loader / journal_loader:.1f}x)")
    print(f"dense vs packed LSTM outputs on one batch: max |difference| {gap:.1e}")


if __name__ == "__main__":
    main()
