"""Benchmark: fleets of several times Component X's size through the data stages and one
training epoch, bucket by bucket on a Dask LocalCluster.

For each fleet size (a multiple of the real 23,550 / 5,046 / 5,045 vehicles) it writes the
synthetic fleet as CSV (streaming), then runs in a fresh project, as `dvc repro` would: ingest,
labels, windowing, stats, inputs, the GBDT's summary features (without the fit) and the
sequence model's fit with one epoch from the on-disk model inputs (and its scoring). Per stage
it prints the wall time, the time per million readouts, and the peak resident memory (GiB) of
the stage's own process and of its largest Dask worker (sampled every 0.2 s).

Goals on a 2-core, 24 GiB machine: 10x completes; no process above 4 GiB at any size; the time
per million readouts at 10x within 1.3x of 1x.

    python bench/scale.py --fleet 1 4 10 [--workdir /somewhere/with/space]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml

from componentx.data import synthetic
from componentx.data.layout import DatasetSummary

ROOT = Path(__file__).resolve().parents[1]
REAL = {"n_train": 23_550, "n_validation": 5_046, "n_test": 5_045}
STAGES = ("ingest", "labels", "windowing", "stats", "inputs")
FEATURES = ("from componentx.candidates.interface import PipelineData\n"
            "from componentx.compute import dask_client\n"
            "from componentx.data.windowing import buckets_of\n"
            "from componentx.gbdt.candidate import GBDT\n"
            "from componentx.params import load_params\n"
            "if __name__ == '__main__':\n"
            "    params = load_params()\n"
            "    data = PipelineData(params['window']['size'])\n"
            "    model = GBDT(params)\n"
            "    model.feature_names = data.summary.feature_columns\n"
            "    model.spec_names = data.summary.spec_columns\n"
            "    model.k, model.window_stats = params['gbdt']['k'], False\n"
            "    with dask_client(params['compute'], buckets_of(data.windows)) as client:\n"
            "        for split in ('train', 'validation', 'test'):\n"
            "            model.features(data.labelled(split), client)\n")


def peak_memory(process: subprocess.Popen) -> tuple[float, float]:
    """Run until ``process`` ends, sampling the resident memory of it and of every process
    below it; returns the peaks (GiB) of the process itself and of its largest child."""
    peaks = {"driver": 0.0, "worker": 0.0}
    root = psutil.Process(process.pid)
    while process.poll() is None:
        try:
            peaks["driver"] = max(peaks["driver"], root.memory_info().rss / 2**30)
            for child in root.children(recursive=True):
                peaks["worker"] = max(peaks["worker"], child.memory_info().rss / 2**30)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    return peaks["driver"], peaks["worker"]


def run(folder: Path, command: list[str]) -> tuple[float, float, float]:
    """Wall seconds and peak memories of ``command`` run in ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(folder / "src"), "COMPONENTX_LOG": "WARNING"}
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=folder, env=env, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))
    reader.start()
    driver, worker = peak_memory(process)
    reader.join()
    if process.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{errors[0][-3000:]}")
    return time.perf_counter() - start, driver, worker


def project(folder: Path, csv: Path) -> None:
    """A project on the CSV folder: the code, params with data.source csv, one epoch."""
    for name in ("stages", "src", "params.yaml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, folder / name)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["data"].update(source="csv", csv_dir=str(csv))
    params["train"].update(epochs=1, min_steps=0)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=float, nargs="+", default=[1, 4, 10])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the fleets are written (tens of GB at 10x)")
    args = parser.parse_args()
    print("| fleet | readouts | stage | wall s | s per M readouts | driver GiB | worker GiB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for factor in args.fleet:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            folder, csv = Path(tmp) / "project", Path(tmp) / "csv"
            sizes = {k: round(v * factor) for k, v in REAL.items()}
            start = time.perf_counter()
            synthetic.generate(csv, sizes["n_train"], sizes["n_validation"], sizes["n_test"],
                               seed=0, progress=False)
            generated = time.perf_counter() - start
            folder.mkdir()
            project(folder, csv)
            results = {"generate (in this process)": (generated, 0.0, 0.0)}
            for stage in STAGES:
                results[stage] = run(folder, [sys.executable, f"stages/{stage}.py"])
            results["GBDT features"] = run(folder, [sys.executable, "-c", FEATURES])
            results["sequence fit, one epoch"] = run(folder, [sys.executable, "stages/fit.py",
                                                              "sequence"])
            readouts = sum(DatasetSummary.load(
                folder / "data/ingested/schema.json").rows.values())
            for stage, (seconds, driver, worker) in results.items():
                print(f"| {factor:g}x | {readouts:,} | {stage} | {seconds:.0f} | "
                      f"{seconds / readouts * 1e6:.1f} | {driver:.2f} | {worker:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
