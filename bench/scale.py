"""Benchmark: the whole default pipeline on fleets of several times Component X's size, on a
Dask scheduler and two workers started apart (as a cluster is), stage by stage.

For each fleet size (a multiple of the real 23,550 / 5,046 / 5,045 vehicles) it writes the
synthetic fleet as CSV (streaming), then runs every stage of ``dvc.yaml`` in its order, each
stage's own command in a fresh project on that CSV, with ``DASK_SCHEDULER_ADDRESS`` naming the
cluster. Sizes compare because the budgets are fixed: one training epoch, no minimum steps,
every boosting iteration of 100 trained. Per stage it prints the wall time, the time per
million readouts, the peak resident memory (GiB, sampled every 0.2 s) of the stage's own
process and its children (the driver) and of the largest Dask worker (the workers are
restarted before each stage), and the largest task argument and task result of the stage
(bytes, as the scheduler saw them: a task's pickled specification, a result's size).

Goals on a 2-core, 24 GiB machine: 10x completes; no process above 4 GiB at any size; the time
per million readouts at 10x within 1.3x of 1x; the driver's peak and the largest task argument
and result do not grow with the fleet.

    python bench/scale.py --fleet 1 4 10 [--workdir /somewhere/with/space] [--stages fit_gbdt]
"""

from __future__ import annotations

import argparse
import os
import pickle
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
FIXED = {"train": {"epochs": 1, "min_steps": 0},
         "gbdt": {"max_iter": 100, "patience": 100}}
WORKERS = 2
PLUGIN = "componentx-task-sizes"


def dask_setup(scheduler) -> None:
    """The scheduler's preload (``dask scheduler --preload bench/scale.py``): record the largest
    task argument and result."""
    from distributed.diagnostics.plugin import SchedulerPlugin

    class TaskSizes(SchedulerPlugin):
        name = PLUGIN

        def __init__(self) -> None:
            self.largest = {"argument": 0, "result": 0}

        def update_graph(self, scheduler, *, tasks, **kwargs) -> None:
            for key in tasks:
                spec = scheduler.tasks[key].run_spec if key in scheduler.tasks else None
                if spec is not None:
                    size = len(pickle.dumps(spec, protocol=5))
                    self.largest["argument"] = max(self.largest["argument"], size)

        def transition(self, key, start, finish, *args, **kwargs) -> None:
            if finish == "memory" and key in scheduler.tasks:
                size = scheduler.tasks[key].nbytes
                self.largest["result"] = max(self.largest["result"], size)

    scheduler.add_plugin(TaskSizes())


def take_sizes(dask_scheduler) -> dict[str, int]:
    """The largest task argument and result since the last call (run on the scheduler)."""
    plugin = dask_scheduler.plugins[PLUGIN]
    largest, plugin.largest = plugin.largest, {"argument": 0, "result": 0}
    return largest


class Cluster:
    """A Dask scheduler (with this file as its preload) and ``WORKERS`` single-threaded worker
    processes, started apart on loopback, in their own sessions; stopped on exit."""

    def __init__(self, folder: Path) -> None:
        dask = str(Path(sys.executable).parent / "dask")
        file = folder / "scheduler.json"
        log = folder / "cluster.log"
        quiet = {"stdout": subprocess.DEVNULL, "stderr": log.open("w"),
                 "start_new_session": True, "cwd": folder}
        self.scheduler = subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--no-dashboard", "--scheduler-file",
             str(file), "--preload", str(Path(__file__).resolve())], **quiet)
        deadline = time.monotonic() + 120
        while not file.exists():
            if self.scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Dask scheduler did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.workers = subprocess.Popen(
            [dask, "worker", "--scheduler-file", str(file), "--nworkers", str(WORKERS),
             "--nthreads", "1", "--memory-limit", "8GiB", "--no-dashboard",
             "--local-directory", str(folder)], **quiet)
        from distributed import Client

        self.client = Client(scheduler_file=str(file), timeout=60)
        self.client.wait_for_workers(WORKERS, timeout=120)
        self.address = self.client.scheduler.address

    def fresh(self) -> None:
        """Restart the workers (each stage's peak is its own) and forget the task sizes."""
        self.client.restart(wait_for_workers=True)
        self.client.run_on_scheduler(take_sizes)

    def sizes(self) -> dict[str, int]:
        return self.client.run_on_scheduler(take_sizes)

    def close(self) -> None:
        self.client.close()
        for process in (self.workers, self.scheduler):
            os.killpg(process.pid, 15)
            process.wait(60)


def peak_memory(process: subprocess.Popen, workers: subprocess.Popen) -> tuple[float, float]:
    """Run until ``process`` ends, sampling the resident memory of it and everything below it
    (the driver's, summed) and of each process below ``workers``; returns both peaks (GiB)."""
    peaks = {"driver": 0.0, "worker": 0.0}
    root, pool = psutil.Process(process.pid), psutil.Process(workers.pid)
    while process.poll() is None:
        try:
            driver = [root, *root.children(recursive=True)]
            peaks["driver"] = max(peaks["driver"],
                                  sum(p.memory_info().rss for p in driver) / 2**30)
            for worker in pool.children(recursive=True):
                peaks["worker"] = max(peaks["worker"], worker.memory_info().rss / 2**30)
        except psutil.NoSuchProcess:
            pass
        time.sleep(0.2)
    return peaks["driver"], peaks["worker"]


def run(folder: Path, command: str, cluster: Cluster) -> tuple[float, float, float]:
    """Wall seconds and peak memories of the shell ``command`` run in ``folder`` on the cluster."""
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": cluster.address, "COMPONENTX_LOG": "WARNING",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    start = time.perf_counter()
    process = subprocess.Popen(["bash", "-c", command], cwd=folder, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))
    reader.start()
    driver, worker = peak_memory(process, cluster.workers)
    reader.join()
    if process.returncode:
        raise RuntimeError(f"{command} failed:\n{errors[0][-3000:]}")
    return time.perf_counter() - start, driver, worker


def project(folder: Path, csv: Path, wanted: list[str] | None = None) -> dict[str, str]:
    """A project on the CSV folder (the code, the DAG, params with data.source csv and the
    budgets fixed); returns the stages' commands in the DAG's order (``wanted`` and the
    stages they need, when given)."""
    for name in ("stages", "src", "params.yaml", "dvc.yaml"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, folder / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, folder / name)
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["data"].update(source="csv", csv_dir=str(csv))
    for group, values in FIXED.items():
        params[group].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    stages = yaml.safe_load((folder / "dvc.yaml").read_text())["stages"]
    unknown = sorted(set(wanted or []) - set(stages))
    if unknown:
        raise SystemExit(f"--stages: no stage {unknown[0]!r} in dvc.yaml")
    # ingest always: the readouts it counts are the rows' measure
    return {name: stages[name]["cmd"]
            for name in dag_order(stages, wanted and [*wanted, "ingest"])}


def stage_needs(stages: dict) -> dict[str, set[str]]:
    """Per stage, the stages whose outputs it reads."""
    def paths(entries: list) -> list[str]:
        return [next(iter(e)) if isinstance(e, dict) else e for e in entries]

    outs = {name: paths(stage.get("outs", []) + stage.get("metrics", [])
                        + stage.get("plots", [])) for name, stage in stages.items()}
    return {name: {other for other in stages for dep in paths(stage.get("deps", []))
                   for out in outs[other] if dep == out or dep.startswith(out.rstrip("/") + "/")
                   or out.startswith(dep.rstrip("/") + "/")} - {name}
            for name, stage in stages.items()}


def dag_order(stages: dict, wanted: list[str] | None = None) -> list[str]:
    """The stages' names in an order where each comes after the stages whose outputs it reads
    (the file's order among those that are free); only ``wanted`` and what they need, when
    given."""
    needs = stage_needs(stages)
    keep, todo = set(), list(wanted or stages)
    while todo:
        name = todo.pop()
        if name not in keep:
            keep.add(name)
            todo.extend(needs[name])
    order: list[str] = []
    while len(order) < len(keep):
        order.append(next(name for name in stages
                          if name in keep and name not in order and needs[name] <= set(order)))
    return order


def size(nbytes: int) -> str:
    return "—" if not nbytes else f"{nbytes / 1e6:.2f} MB" if nbytes >= 1e5 else f"{nbytes:,} B"


def commit() -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "src", "stages", "bench"], cwd=ROOT,
                           text=True, capture_output=True).stdout.strip()
    return head + (" with uncommitted changes" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", type=float, nargs="+", default=[1, 4, 10])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the fleets are written (tens of GB at 10x)")
    parser.add_argument("--stages", nargs="+", default=None,
                        help="these stages and those they need (default: every stage)")
    args = parser.parse_args()
    print(f"commit {commit()}, {WORKERS} workers, {os.cpu_count()} cores")
    print("| fleet | readouts | stage | wall s | s per M readouts | driver GiB | "
          "largest worker GiB | largest task argument | largest task result |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    for factor in args.fleet:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            folder, csv = Path(tmp) / "project", Path(tmp) / "csv"
            sizes = {k: max(round(v * factor), 20) for k, v in REAL.items()}
            start = time.perf_counter()
            synthetic.generate(csv, sizes["n_train"], sizes["n_validation"], sizes["n_test"],
                               seed=0, progress=False)
            generated = time.perf_counter() - start
            folder.mkdir()
            commands = project(folder, csv, args.stages)
            cluster = Cluster(Path(tmp))
            try:
                for stage, command in commands.items():
                    cluster.fresh()
                    seconds, driver, worker = run(folder, command, cluster)
                    largest = cluster.sizes()
                    if stage == "ingest":
                        readouts = sum(DatasetSummary.load(
                            folder / "data/ingested/schema.json").rows.values())
                        print(f"| {factor:g}× | {readouts:,} | generate the CSV (streaming) | "
                              f"{generated:.0f} | {generated / readouts * 1e6:.1f} | — | — | — "
                              "| — |")
                    print(f"| {factor:g}× | {readouts:,} | {stage} | {seconds:.0f} | "
                          f"{seconds / readouts * 1e6:.1f} | {driver:.2f} | {worker:.2f} | "
                          f"{size(largest['argument'])} | {size(largest['result'])} |",
                          flush=True)
            finally:
                cluster.close()


if __name__ == "__main__":
    main()
