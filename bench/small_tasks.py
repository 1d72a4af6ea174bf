"""Benchmark: the pipeline with its defaults on small tasks unlike the built-in fleet
(``componentx.data.tasks``): every candidate, what the gate ships, and how often that is the
best candidate on test.

Each task runs in a fresh temporary DVC project, setting only what the layout forces: the data
folder, the window size and a 0/1 cost matrix (the class count is inferred). It prints the
test accuracy of each candidate (the sequence model with the default LSTM, the GBDT, MiniRocket)
and of the convolutional encoder (the same project re-run with ``model.arch: fcn``, on windows
of at most ``--fcn-up-to`` readouts: over longer ones its training takes hours on 2 cores, and
the column says so), the model
the gate ships (chosen out-of-fold or on validation, never on test) and its test accuracy, and
whether that is the best candidate's within noise: at most two binomial standard errors of the
best accuracy below it.

    python bench/small_tasks.py [--tasks few-fixed shape-six ...] [--fcn-up-to 100]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from componentx.data.tasks import TASKS, write_task
from componentx.decisions.candidates import CANDIDATES

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ["dvc.yaml", "params.yaml", "stages", "src", ".gitignore", ".dvcignore",
           "promoted/README.md", ".dvc/config"]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
       "DVC_NO_ANALYTICS": "1", "COMPONENTX_LOG": "WARNING"}


def run(folder: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=folder, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def project(folder: Path, task, overrides: dict) -> Path:
    """A fresh DVC project on ``task``'s data with the project's code and params."""
    folder.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=folder, check=True)
    run(folder, sys.executable, "-m", "dvc", "init", "-q")
    for name in PROJECT:
        source, target = ROOT / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, target)
    write_task(task, folder / "data" / "raw")
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["data"]["source"] = "csv"
    params["window"]["size"] = task.max_length
    params["evaluate"]["cost_matrix"] = "zero_one"
    for section, values in overrides.items():
        params[section].update(values)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(folder, "git", "add", "-A")
    run(folder, "git", "commit", "-q", "-m", "task")
    return folder


def accuracies(folder: Path) -> dict[str, float]:
    """Test accuracy of every candidate, of the shipped model, and its name."""
    found = {c.name: json.loads((folder / c.metrics).read_text())["test"]["accuracy"]
             for c in CANDIDATES}
    gate = json.loads((folder / "metrics/gate.json").read_text())
    return {**found, "shipped": gate["shipped"]["test"]["accuracy"], "ships": gate["ship"],
            "selection": gate["selection"]["mode"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS])
    parser.add_argument("--fcn-up-to", type=int, default=100,
                        help="re-run with model.arch fcn on windows of at most this many readouts")
    args = parser.parse_args()
    print("| task | series | classes | lengths | chance | selection | sequence (LSTM) | GBDT | "
          "MiniRocket | sequence (FCN) | shipped | shipped is test-best | minutes |")
    print("| --- " * 13 + "|")
    best_count = tasks = 0
    for task in (t for t in TASKS if t.name in args.tasks):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            folder = project(Path(tmp) / task.name, task, {})
            run(folder, sys.executable, "-m", "dvc", "repro")
            found = accuracies(folder)
            fcn = "not run"
            if task.max_length <= args.fcn_up_to:
                params = yaml.safe_load((folder / "params.yaml").read_text())
                params["model"]["arch"] = "fcn"
                (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
                run(folder, sys.executable, "-m", "dvc", "repro", "train", "evaluate")
                report = json.loads((folder / "metrics/evaluate.json").read_text())
                fcn = f"{report['test']['accuracy']:.2f}"
        test = task.series - round(task.series * 0.6) - round(task.series * 0.2)
        best = max(found[c.name] for c in CANDIDATES)
        noise = 2 * math.sqrt(best * (1 - best) / test)
        is_best = found["shipped"] >= best - noise
        best_count, tasks = best_count + is_best, tasks + 1
        print(f"| {task.name} | {task.series} | {task.classes} | {task.min_length}–"
              f"{task.max_length} | {1 / task.classes:.2f} | {found['selection']} | "
              f"{found['sequence']:.2f} | {found['baseline']:.2f} | {found['rocket']:.2f} | "
              f"{fcn} | {found['ships']}, {found['shipped']:.2f} | "
              f"{'yes' if is_best else 'no'} (best {best:.2f} ± {noise:.2f}) | "
              f"{(time.perf_counter() - start) / 60:.1f} |", flush=True)
    print(f"\nthe shipped model is the test-best within noise on {best_count} of {tasks} tasks")


if __name__ == "__main__":
    main()
