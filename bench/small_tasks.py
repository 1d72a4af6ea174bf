"""Benchmark: the pipeline with its defaults on small tasks unlike the built-in fleet
(``componentx.data.tasks``): every candidate, what the gate ships, whether that holds up on a
large test split, and the field's standard classifier beside it.

Each task runs in a fresh temporary DVC project, setting only what the layout forces: the data
folder, the window size and a 0/1 cost matrix (the class count is inferred). It prints each
candidate's test accuracy, the one the gate ships (chosen out-of-fold or on validation, never
on test), and the criterion: the shipped model passes where the 95% paired bootstrap interval
of its accuracy minus the test-best candidate's (resampling test series) reaches 0. For
contrast, a random pick among the candidates fails that criterion with the share of
candidates that fail it on the task; the last line sums that share over the tasks. The
``standard`` column is sktime's MiniRocket (multivariate, unequal length) with scikit-learn's
``RidgeClassifierCV``, the field's standard classifier, fitted on all labelled series and
scored on the same test series.

    python bench/small_tasks.py [--tasks few-fixed shape-six ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from componentx.candidates.registry import BUILTIN
from componentx.data.tasks import TASKS, Task, series, write_task
from componentx.decisions.metrics import paired_interval

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ["dvc.yaml", "params.yaml", "stages", "src", ".gitignore", ".dvcignore",
           "promoted/README.md", ".dvc/config"]
ENV = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.com",
       "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.com",
       "DVC_NO_ANALYTICS": "1", "COMPONENTX_LOG": "WARNING"}
NAMES = [r.name for r in BUILTIN]


def run(folder: Path, *command: str) -> str:
    result = subprocess.run(command, cwd=folder, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def project(folder: Path, task: Task) -> Path:
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
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(folder, "git", "add", "-A")
    run(folder, "git", "commit", "-q", "-m", "task")
    return folder


def right(folder: Path, name: str) -> pd.DataFrame:
    """Per test series: whether candidate ``name`` got it right."""
    frame = pd.read_parquet(folder / "data/predictions" / name / "test.parquet")
    return frame.assign(right=(frame["predicted"] == frame["class_label"]).astype(float))


def passes(ours: pd.DataFrame, best: pd.DataFrame, seed: int = 0) -> bool:
    """Whether ``ours`` is as accurate as ``best`` but for noise: the 95% paired bootstrap
    interval of its accuracy minus best's reaches 0."""
    interval = paired_interval(ours["right"], best["right"], 2000, seed, reduce="mean",
                               vehicles=ours["vehicle_id"].to_numpy())
    return interval["ci"][1] >= 0


def standard_accuracy(task: Task) -> float:
    """sktime's MiniRocket (multivariate, unequal length) and RidgeClassifierCV, fitted on
    every labelled series, scored on the test series."""
    from sklearn.linear_model import RidgeClassifierCV
    from sktime.transformations.rocket import MiniRocketMultivariateVariable

    data, labels = series(task)
    frames = [pd.DataFrame(values) for values in data]
    fitted, test = slice(0, task.series), slice(task.series, None)
    transform = MiniRocketMultivariateVariable(random_state=0, pad_value_short_series=0.0)
    features = transform.fit_transform(frames[fitted])
    ridge = RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)).fit(features, labels[fitted])
    return float((ridge.predict(transform.transform(frames[test])) == labels[test]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS])
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    print(f"commit {commit}\n")
    columns = " | ".join(NAMES)
    print(f"| task | labelled / test series | classes | lengths | channels | chance | "
          f"selection | {columns} | standard | shipped | shipped passes | candidates that "
          f"fail | minutes |")
    print("| --- " * (12 + len(NAMES)) + "|")
    random_fails = shipped_passes = tasks = 0
    for task in (t for t in TASKS if t.name in args.tasks):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            folder = project(Path(tmp) / task.name, task)
            run(folder, sys.executable, "-m", "dvc", "repro")
            gate = json.loads((folder / "metrics/gate.json").read_text())
            frames = {name: right(folder, name) for name in NAMES}
        accuracy = {name: frame["right"].mean() for name, frame in frames.items()}
        best = max(NAMES, key=lambda name: accuracy[name])
        failing = [name for name in NAMES if not passes(frames[name], frames[best])]
        shipped_ok = gate["ship"] not in failing
        standard = standard_accuracy(task)
        random_fails += len(failing) / len(NAMES)
        shipped_passes += shipped_ok
        tasks += 1
        print(f"| {task.name} | {task.series} / {task.test_series} | {task.classes} | "
              f"{task.min_length}–{task.max_length} | {task.channels} | "
              f"{1 / task.classes:.2f} | {gate['selection']['mode'].replace('_', '-')} | "
              + " | ".join(f"{accuracy[name]:.3f}" for name in NAMES)
              + f" | {standard:.3f} | {gate['ship']}, {accuracy[gate['ship']]:.3f} | "
              f"{'yes' if shipped_ok else 'NO'} | {len(failing)} of {len(NAMES)} | "
              f"{(time.perf_counter() - start) / 60:.1f} |", flush=True)
    print(f"\nthe shipped model passes on {shipped_passes} of {tasks} tasks; a random pick among "
          f"the candidates would fail on {random_fails:.1f} of {tasks} (expected)")


if __name__ == "__main__":
    main()
