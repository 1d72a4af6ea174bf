"""params.yaml is checked before any work: every section's keys, types, ranges and choices."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT

from componentx.params import SCHEMA, problems, read_params

DEFAULTS = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(section, key, value):
    params = copy.deepcopy(DEFAULTS)
    params[section][key] = value
    return params


def test_the_project_params_are_valid_and_every_key_has_a_rule():
    assert problems(DEFAULTS) == []
    assert set(DEFAULTS) == set(SCHEMA)
    for section, rules in SCHEMA.items():
        assert set(DEFAULTS[section]) == set(rules), section


@pytest.mark.parametrize("section", sorted(SCHEMA))
def test_a_misspelt_key_in_any_section_is_named(section):
    key = next(iter(DEFAULTS[section]))
    params = copy.deepcopy(DEFAULTS)
    params[section][key + "x"] = params[section].pop(key)
    found = problems(params)
    assert f"unknown key {section}.{key}x" in found[0]
    assert any(f"missing key {section}.{key} " in line for line in found)


@pytest.mark.parametrize(("section", "key", "value", "says"), [
    ("train", "lr", -1, "train.lr must be a number > 0"),
    ("train", "epochs", 2.5, "train.epochs must be an integer >= 1"),
    ("train", "scheduler", "linear", "one of none, step, cosine, plateau"),
    ("train", "resume", "yes", "true or false"),
    ("evaluate", "calibration", "isotonic", "temperature, bias_temperature, none"),
    ("evaluate", "cost_matrix", [[0, 1], [1]], "square matrix"),
    ("labels", "num_classes", 1, "auto or an integer >= 2"),
    ("labels", "windows", [6, 0], "a list of number > 0"),
    ("model", "dropout", 1.5, "model.dropout must be a number >= 0 <= 0.99"),
    ("compute", "device", "tpu", "auto, cpu, cuda or cuda:N"),
    ("train", "class_weights", [1, -2], "none, inverse or a list"),
    ("data", "source", "s3", "one of synthetic, csv"),
])
def test_types_ranges_and_choices(section, key, value, says):
    found = problems(with_change(section, key, value))
    assert len(found) == 1 and says in found[0], found


def test_cross_checks():
    assert "labels.num_classes is 4" in problems(with_change("labels", "num_classes", 4))[0]
    assert "increasing" in problems(with_change("labels", "windows", [6, 24, 12, 48]))[0]
    assert problems(with_change("evaluate", "cost_matrix", "zero_one")) == []


def run_stage(stage, cwd):
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{stage}.py")], cwd=cwd,
                          capture_output=True, text=True)


def test_a_stage_stops_with_one_line_naming_the_key(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        with_change("evaluate", "calibraton", "none")))
    result = run_stage("gate", tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "unknown key evaluate.calibraton" in result.stderr


@pytest.mark.parametrize("stage", sorted(p.stem for p in (ROOT / "stages").glob("*.py")))
def test_importing_a_stage_reads_nothing(tmp_path, monkeypatch, stage):
    """Params are read in main: a stage script imports in a folder without params.yaml."""
    import importlib.util

    monkeypatch.chdir(tmp_path)
    spec = importlib.util.spec_from_file_location(f"stage_{stage}", ROOT / "stages" /
                                                  f"{stage}.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.mark.parametrize(("content", "says"), [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "not UTF-8 text"),
    (b"train: [unclosed", "line 1: not valid YAML"),
])
def test_a_file_that_is_not_yaml_text_is_named(tmp_path, content, says):
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    result = run_stage("stats", tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert f"{path.name}" in result.stderr and says in result.stderr


def test_componentx_validate_lists_every_problem(tmp_path):
    params = with_change("train", "lrr", 0.1)
    params["gbdt"]["library"] = "xgboost"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(params))
    result = subprocess.run([sys.executable, "-m", "componentx", "validate", "bad.yaml"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2
    assert "unknown key train.lrr" in result.stderr and "gbdt.library" in result.stderr
    good = subprocess.run([sys.executable, "-m", "componentx", "validate",
                           str(ROOT / "params.yaml")], capture_output=True, text=True)
    assert good.returncode == 0 and "OK" in good.stdout
    assert read_params(ROOT / "params.yaml") == DEFAULTS
