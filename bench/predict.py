"""Benchmark: scoring new readouts with a shipped bundle.

- latency for one vehicle (its readouts in memory: features, window, model, calibration,
  decision), p50 and p99 over many vehicles, with onnxruntime and with torch, one thread;
- throughput scoring a whole test split from CSV files (`componentx predict` end to end),
  vehicles per second, and the share of the time spent reading and checking the CSV.

Targets: p50 <= 5 ms for one vehicle with onnxruntime on one core; the whole test split
(5,045 vehicles) in under 10 s on 2 cores.

    dvc repro && python bench/predict.py [--bundle models/bundles/sequence] [--vehicles 5045]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from componentx.candidates.interface import Readouts, Windows
from componentx.data import synthetic
from componentx.data.layout import ID, TIME
from componentx.data.readouts import Block, readout_table
from componentx.data.windowing import window_index
from componentx.serving.bundle import Bundle, read_meta
from componentx.serving.scoring import predict


def one_vehicle_latencies(bundle: Path, meta: dict, engine: str, table, repeats: int
                          ) -> np.ndarray:
    """Seconds to score each of ``repeats`` vehicles alone, one thread."""
    scorer = Bundle.load(bundle, engine)
    if engine == "onnx":
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        scorer.model.sessions["cpu"] = onnxruntime.InferenceSession(
            str(bundle / "model.onnx"), options, providers=["CPUExecutionProvider"])
    else:
        import torch

        torch.set_num_threads(1)
    cost = scorer.cost_matrix
    ids = table.column(ID).to_numpy()
    starts = np.r_[0, np.flatnonzero(ids[1:] != ids[:-1]) + 1, len(ids)]
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False)
                              for c in meta["feature_columns"]])
    times = table.column(TIME).to_numpy()
    specs = np.zeros((1, len(meta["spec_columns"])), dtype=np.int64)
    seconds = []
    for first, stop in zip(starts[:-1][:repeats], starts[1:][:repeats], strict=True):
        start = time.perf_counter()
        rows = slice(first, stop)
        vehicle_ids, vehicle_times = ids[rows], times[rows]
        end, length = window_index(vehicle_ids, vehicle_times, vehicle_ids[-1:],
                                   vehicle_times[-1:], meta["window_size"])
        windows = Windows(Readouts(values[rows], vehicle_times, vehicle_ids), end, length,
                          vehicle_times[-1:], specs)
        (scorer.probabilities(windows) @ cost).argmin(axis=1)
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds[5:])  # the first calls warm the engine up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=Path("models/bundles/sequence"))
    parser.add_argument("--vehicles", type=int, default=5045, help="test split size")
    parser.add_argument("--repeats", type=int, default=500, help="vehicles timed alone")
    args = parser.parse_args()
    meta = read_meta(args.bundle)
    settings = yaml.safe_load(Path("params.yaml").read_text())
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        synthetic.generate(folder, 10, 10, args.vehicles, seed=1,
                           windows=tuple(settings["labels"]["windows"]), progress=False)
        readouts = folder / "test_operational_readouts.csv"
        specs = folder / "test_specifications.csv"
        start = time.perf_counter()
        table = readout_table(Block.whole(readouts), meta["feature_columns"])
        parse = time.perf_counter() - start
        table = table.sort_by([(ID, "ascending"), (TIME, "ascending")])
        arch = meta.get("model_config", {}).get("arch", meta.get("library"))
        print(f"bundle {args.bundle} ({meta['kind']}, {arch}), test split of {args.vehicles} "
              f"vehicles, {table.num_rows} readouts, {readouts.stat().st_size / 1e6:.0f} MB "
              "CSV\n")
        engines = ("onnx", "torch") if meta["kind"] == "sequence" else ("auto",)
        print(f"{'whole split from CSV, 2 cores':30} {'seconds':>8} {'vehicles/s':>11} "
              f"{'parsing':>8}")
        for engine in engines:
            start = time.perf_counter()
            predict(args.bundle, readouts, specs, folder / f"{engine}.csv", engine)
            total = time.perf_counter() - start
            print(f"{engine:30} {total:>8.2f} {args.vehicles / total:>11.0f} "
                  f"{parse / total:>7.0%}")
        print(f"\n{'one vehicle, one thread':30} {'p50 ms':>8} {'p99 ms':>8}")
        for engine in engines:
            latency = one_vehicle_latencies(args.bundle, meta, engine, table, args.repeats)
            print(f"{engine:30} {np.percentile(latency, 50) * 1e3:>8.2f} "
                  f"{np.percentile(latency, 99) * 1e3:>8.2f}")


if __name__ == "__main__":
    main()
