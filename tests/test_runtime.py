"""Stage plumbing: atomic outputs and clear params errors."""

from __future__ import annotations

import pytest

from componentx.runtime import atomic_dir, atomic_write_json, section_config
from componentx.training import TrainConfig


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


def test_unknown_param_names_the_key(capsys):
    config = section_config(TrainConfig, {"train": {"lr": 0.1}}, "train")
    assert config.lr == 0.1
    with pytest.raises(SystemExit) as exit_info:
        section_config(TrainConfig, {"train": {"lrr": 0.1}}, "train")
    assert exit_info.value.code == 1
    assert "unknown key(s) train.lrr" in capsys.readouterr().err
