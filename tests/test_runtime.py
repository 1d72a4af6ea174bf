"""Stage plumbing: atomic outputs and clear params errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from componentx.runtime import atomic_dir, atomic_write_json


def test_atomic_dir_replaces_only_on_success(tmp_path):
    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("stage failed")
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left


def test_atomic_json(tmp_path):
    atomic_write_json(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def python_code(code: str, folder: Path) -> subprocess.CompletedProcess:
    """``code`` run by this Python in a process of its own, in ``folder``."""
    return subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True,
                          text=True)


def test_a_tracking_option_without_its_package_is_one_clear_error(tmp_path):
    """mlflow made unimportable, as on a machine without the extra installed."""
    code = ("import sys; sys.modules['mlflow'] = None\n"
            "from componentx.tracking import Tracker\n"
            "settings = {'mlflow': True, 'mlflow_uri': 'mlruns', 'mlflow_experiment': 'x',\n"
            "            'tensorboard': False, 'tensorboard_dir': 'tb'}\n"
            "from componentx.runtime import run_stage\n"
            "run_stage(lambda: Tracker(settings, 'run', 'abc'))\n")
    result = python_code(code, tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: tracking.mlflow is true but mlflow is not "
                                     "installed: pip install -e .[mlflow] (or set "
                                     "tracking.mlflow: false)")


def test_leftovers_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".out.abc123").mkdir()
    (tmp_path / ".out.abc123" / "half.txt").write_text("half")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("outcome", ["killed", "failed"])
def test_a_writer_stopped_inside_the_swap_loses_no_output(tmp_path, outcome):
    """The writer dies (SIGKILL) or its rename fails just as the new output would be renamed
    in: the old output survives, whole, for the next writer."""

    target = tmp_path / "out"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    stop = {"killed": "os.kill(os.getpid(), signal.SIGKILL)",
            "failed": "raise OSError(28, 'No space left on device')"}[outcome]
    code = ("import os, signal\n"
            "from componentx.runtime import atomic_dir\n"
            "real = os.replace\n"
            "def replace(src, dst):\n"
            "    if os.path.basename(src).startswith('.out.') and 'previous' not in str(src):\n"
            f"        {stop}\n"
            "    real(src, dst)\n"
            "os.replace = replace\n"
            "with atomic_dir('out') as tmp:\n"
            "    (tmp / 'a.txt').write_text('new')\n")
    result = python_code(code, tmp_path)
    assert result.returncode != 0
    if outcome == "failed":
        assert (target / "a.txt").read_text() == "old"
    with pytest.raises(RuntimeError), atomic_dir(target):
        raise RuntimeError("the next writer fails too")
    assert (target / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_stage_refuses_to_start_while_another_process_writes_its_outputs(tmp_path):
    """A process holding the stage's lock (as the workers of a killed run would): the stage
    stops with one line, and starts once the holder is gone."""
    import time

    from conftest import ROOT

    (tmp_path / ".dvc").mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from componentx.runtime import lock_stage; "
         "lock_stage('stats', shared=True); print('held', flush=True); time.sleep(60)"],
        cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        stage = [sys.executable, str(ROOT / "stages" / "stats.py")]
        refused = subprocess.run(stage, cwd=tmp_path, capture_output=True, text=True)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert "stage stats: another process" in refused.stderr
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.2)
    after = subprocess.run(stage, cwd=tmp_path, capture_output=True, text=True)
    assert "another process" not in after.stderr  # it fails later: there is no params.yaml
