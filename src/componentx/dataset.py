"""Model inputs: the normalised readouts as one contiguous tensor, windows gathered per batch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from componentx.features import FeatureStats, encode_specs, normalise
from componentx.windowing import gather_rows

AGE_SCALE = 48.0  # time units; the age channel is (ref_time - time_step) / AGE_SCALE


@dataclass
class Batch:
    x: torch.Tensor  # (batch, window, features + 1): features and the age channel
    lengths: torch.Tensor  # (batch,)
    specs: torch.Tensor  # (batch, n_specs)
    y: torch.Tensor  # (batch,)

    def to(self, device: torch.device) -> Batch:
        return Batch(self.x.to(device, non_blocking=True), self.lengths,
                     self.specs.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


class WindowSet:
    """One split's windows over its normalised readouts.

    The readouts are normalised once into a float32 tensor with a zero padding row at the
    end; :meth:`batch` gathers a batch of windows with one index operation.
    """

    def __init__(self, features: torch.Tensor, times: np.ndarray, windows: pd.DataFrame,
                 specs: np.ndarray, size: int) -> None:
        self.features = features
        self.times = np.r_[times, 0.0]
        self.windows = windows
        self.end_row = windows["end_row"].to_numpy()
        self.length = windows["length"].to_numpy()
        self.ref_time = windows["ref_time"].to_numpy()
        self.labels = torch.tensor(windows["class_label"].to_numpy(), dtype=torch.long)
        self.specs = torch.tensor(specs, dtype=torch.long)
        self.size = size

    def __len__(self) -> int:
        return len(self.end_row)

    @property
    def n_inputs(self) -> int:
        return self.features.shape[1] + 1

    def batch(self, index: np.ndarray) -> Batch:
        pad = len(self.features) - 1
        rows = gather_rows(self.end_row[index], self.length[index], self.size, pad)
        age = np.where(rows != pad, self.ref_time[index][:, None] - self.times[rows], 0.0)
        x = torch.cat([self.features[torch.from_numpy(rows)],
                       torch.from_numpy((age / AGE_SCALE).astype(np.float32))[:, :, None]], dim=2)
        return Batch(x, torch.from_numpy(self.length[index]), self.specs[index],
                     self.labels[index])


def load_window_set(windows_dir: Path, ingested_dir: Path, split: str, stats: FeatureStats,
                    spec_columns: list[str], size: int) -> WindowSet:
    """Read one split's windowing outputs and normalise its readouts."""
    values = np.load(windows_dir / f"{split}_values.npy", mmap_mode="r")
    times = np.load(windows_dir / f"{split}_time.npy")
    vehicles = np.load(windows_dir / f"{split}_vehicle.npy")
    normalised = normalise(values, times, vehicles, stats)
    features = torch.from_numpy(np.concatenate(
        [normalised, np.zeros((1, normalised.shape[1]), dtype=np.float32)]))
    windows = pd.read_parquet(windows_dir / f"{split}_windows.parquet")
    specs = window_spec_codes(ingested_dir, split, spec_columns,
                              windows["vehicle_id"].to_numpy())
    return WindowSet(features, times, windows, specs, size)


def window_spec_codes(ingested_dir: Path, split: str, spec_columns: list[str],
                      window_vehicles: np.ndarray) -> np.ndarray:
    """Specification codes (windows, columns), learned on train; 0 where unknown."""
    if not spec_columns:
        return np.zeros((len(window_vehicles), 0), dtype=np.int64)
    train_specs = pd.read_parquet(ingested_dir / "train_specs.parquet")
    split_specs = pd.read_parquet(ingested_dir / f"{split}_specs.parquet")
    codes, _ = encode_specs(train_specs, split_specs, spec_columns)
    position = pd.Index(split_specs["vehicle_id"]).get_indexer(window_vehicles)
    return np.where(position[:, None] >= 0, codes[np.maximum(position, 0)], 0)


def spec_cardinalities(ingested_dir: Path, spec_columns: list[str]) -> list[int]:
    if not spec_columns:
        return []
    train_specs = pd.read_parquet(ingested_dir / "train_specs.parquet")
    return encode_specs(train_specs, train_specs, spec_columns)[1]
