"""Benchmark: this project's windowing against the original journal's per-vehicle loop.

At the real Component X size (23,550 train vehicles, ~1.12M readouts, 105 features), builds
the train windows both ways in the same run and prints rows/s, windows/s, peak memory and
the speed-up. The journal loop (pandas groupby, get_group, a boolean mask per label) is timed
on a subset of labels when it would take too long, and its rate is reported per window.

    python bench/windowing.py [--vehicles 23550] [--journal-labels 20000] [--event-refs all]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np
import pandas as pd

from componentx.data import labels as labels_module
from componentx.data import synthetic
from componentx.data.windowing import build_windows, gather_rows
from componentx.params import EVENT_REFS

FEATURES = 105


def readouts(vehicles: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Readout times of a synthetic fleet at the requested size, with random features."""
    rng = np.random.default_rng(seed)
    fleet = synthetic.sample_vehicles(rng, np.arange(vehicles),
                                      synthetic.spec_probabilities(rng))
    ticks = synthetic.readout_ticks(rng, fleet)
    valid = ticks >= 0
    ids = np.repeat(fleet.ids, valid.sum(axis=1))
    times = np.round(ticks[valid] * synthetic.TICK, 1)
    frame = pd.DataFrame({"vehicle_id": ids, "time_step": times})
    values = rng.random((len(ids), FEATURES), dtype=np.float32)
    tte = pd.DataFrame({"vehicle_id": fleet.ids,
                        "length_of_study_time_step": fleet.study_ticks * synthetic.TICK,
                        "in_study_repair": fleet.event.astype(int)})
    return frame, values, tte


def project_windows(ids, times, values, labels, size, batch=256) -> int:
    """Index every window, then gather them batch by batch as training does."""
    meta = build_windows(ids, times, labels, size)
    features = np.concatenate([values, np.zeros((1, FEATURES), np.float32)])
    end, length = meta["end_row"].to_numpy(), meta["length"].to_numpy()
    checksum = 0.0
    for start in range(0, len(meta), batch):
        rows = gather_rows(end[start:start + batch], length[start:start + batch], size,
                           len(values))
        checksum += float(features[rows][:, -1, 0].sum())
    return len(meta)


def journal_windows(frame, values, labels, size) -> int:
    """The original design: per label, get the vehicle's group and mask it by time."""
    table = pd.concat([frame, pd.DataFrame(values)], axis=1)
    grouped = table.groupby("vehicle_id")
    windows = []
    for vehicle, ref in zip(labels["vehicle_id"], labels["ref_time"], strict=True):
        group = grouped.get_group(vehicle)
        window = group[group["time_step"] <= ref].iloc[-size:, 2:].to_numpy(dtype=np.float32)
        padded = np.zeros((size, FEATURES), dtype=np.float32)
        if len(window):
            padded[size - len(window):] = window
        windows.append(padded)
    return len(windows)


def measure(function, *args) -> tuple[float, float, int]:
    tracemalloc.start()
    start = time.perf_counter()
    count = function(*args)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vehicles", type=int, default=23_550)
    parser.add_argument("--journal-labels", type=int, default=20_000)
    parser.add_argument("--event-refs", default="one_per_class", choices=EVENT_REFS)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()

    frame, values, tte = readouts(args.vehicles, seed=0)
    ids, times = frame["vehicle_id"].to_numpy(), frame["time_step"].to_numpy()
    labels = labels_module.labels_from_tte(ids, times, tte, [6, 12, 24, 48], args.event_refs)
    subset = labels.sample(min(args.journal_labels, len(labels)), random_state=0)
    print(f"{args.vehicles} vehicles, {len(frame)} readouts, {FEATURES} features, "
          f"{len(labels)} windows of {args.size} ({args.event_refs})")

    ours = measure(project_windows, ids, times, values, labels, args.size)
    journal = measure(journal_windows, frame, values, subset, args.size)
    rows = [("project (index + batched gather)", *ours), ("journal loop (groupby/get_group/mask)",
                                                           *journal)]
    print(f"\n{'method':40} {'windows':>9} {'seconds':>9} {'windows/s':>11} "
          f"{'readout rows/s':>15} {'peak MiB':>9}")
    for name, seconds, peak, count in rows:
        scale = len(labels) / count  # the journal's rate, extrapolated to every window
        print(f"{name:40} {count:>9} {seconds:>9.2f} {count / seconds:>11.0f} "
              f"{len(frame) / (seconds * scale):>15.0f} {peak:>9.0f}")
    ratio = (ours[2] / ours[0]) / (journal[2] / journal[0])
    print(f"\nspeed-up (windows/s, same run): {ratio:.0f}x")


if __name__ == "__main__":
    main()
