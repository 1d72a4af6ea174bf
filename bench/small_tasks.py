"""Benchmark: the pipeline with its defaults on small multichannel tasks unlike the built-in
fleet (``componentx.tasks``), against what ``componentx sweep`` finds.

Each task runs in a fresh temporary DVC project, setting only what the layout forces: the data
folder, the window size and a 0/1 cost matrix (the class count is inferred). It prints test
accuracy of the sequence model and of the baseline with the defaults, and with ``--sweep`` the
sweep's pick (chosen on validation) and its test accuracy.

    python bench/small_tasks.py [--sweep] [--tasks few-fixed binary-variable many-variable]
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

import yaml

from componentx.data.tasks import TASKS, write_task

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ["dvc.yaml", "params.yaml", "stages", "src", ".gitignore", ".dvcignore",
           ".dvc/config"]
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
    evaluate = json.loads((folder / "metrics/evaluate.json").read_text())
    baseline = json.loads((folder / "metrics/baseline.json").read_text())
    return {"sequence": evaluate["test"]["accuracy"], "baseline": baseline["test"]["accuracy"],
            "sequence_validation": evaluate["validation"]["accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=[t.name for t in TASKS])
    parser.add_argument("--sweep", action="store_true", help="also run componentx sweep")
    args = parser.parse_args()
    print("| task | series | classes | lengths | chance | sequence, defaults | GBDT, defaults |"
          + (" sweep pick (validation) | sequence, sweep |" if args.sweep else "") + " minutes |")
    print("| --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- |" if args.sweep else "")
          + " --- |")
    for task in (t for t in TASKS if t.name in args.tasks):
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            folder = project(Path(tmp) / task.name, task, {})
            run(folder, sys.executable, "-m", "dvc", "repro")
            found = accuracies(folder)
            row = (f"| {task.name} | {task.series} | {task.classes} | {task.min_length}–"
                   f"{task.max_length} | {1 / task.classes:.2f} | {found['sequence']:.2f} | "
                   f"{found['baseline']:.2f} |")
            if args.sweep:
                run(folder, "git", "add", "-A")
                run(folder, "git", "commit", "-q", "-m", "defaults")
                output = run(folder, sys.executable, "-m", "componentx", "sweep")
                pick = output.strip().splitlines()[-1].split("pick: ")[-1].split(" ")[0]
                swept = accuracies(folder)
                row += f" {pick} | {swept['sequence']:.2f} |"
        print(row + f" {(time.perf_counter() - start) / 60:.1f} |", flush=True)


if __name__ == "__main__":
    main()
