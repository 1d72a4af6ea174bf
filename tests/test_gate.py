"""Promotion gate verdicts and the promote command."""

from __future__ import annotations

import copy
import json

import pytest

from componentx.gate import format_verdict, gate_verdict, promote

REFERENCE = {"test": {"cost_total": 100.0, "pr_auc": {"macro": 0.3}, "brier": 0.05,
                      "ece": 0.01}}


def run_with(**changes):
    run = copy.deepcopy(REFERENCE)
    for key, value in changes.items():
        if key == "pr_auc":
            run["test"]["pr_auc"]["macro"] = value
        else:
            run["test"][key] = value
    return run


@pytest.mark.parametrize(("changes", "passed", "failing"), [
    ({"cost_total": 90.0}, True, None),
    ({"cost_total": 100.0}, False, "cost_total"),  # cost must be strictly lower
    ({"cost_total": 90.0, "pr_auc": 0.29}, False, "pr_auc_macro"),
    ({"cost_total": 90.0, "brier": 0.051}, False, "brier"),
    ({"cost_total": 90.0, "ece": 0.03}, True, None),  # within the 0.02 tolerance
    ({"cost_total": 90.0, "ece": 0.031}, False, "ece"),
])
def test_gate_rules(changes, passed, failing):
    verdict = gate_verdict(run_with(**changes), REFERENCE, "test", 0.02)
    assert verdict["passed"] is passed
    failed = [name for name, check in verdict["checks"].items() if not check["passed"]]
    assert failed == ([failing] if failing else [])
    assert ("PASSED" if passed else "FAILED") in format_verdict(verdict, "ref.json")


def test_missing_split_is_an_error():
    with pytest.raises(ValueError, match="gate.split"):
        gate_verdict(REFERENCE, REFERENCE, "validation", 0.02)


def test_promote_only_what_passed(tmp_path):
    model, metrics, gate = tmp_path / "best.pt", tmp_path / "evaluate.json", tmp_path / "g.json"
    model.write_bytes(b"weights")
    metrics.write_text(json.dumps(REFERENCE))
    gate.write_text(json.dumps({"passed": False}))
    with pytest.raises(ValueError, match="gate failed"):
        promote(model, metrics, gate, tmp_path / "promoted")
    assert not (tmp_path / "promoted").exists()
    gate.write_text(json.dumps({"passed": True}))
    promote(model, metrics, gate, tmp_path / "promoted")
    assert (tmp_path / "promoted" / "model.pt").read_bytes() == b"weights"
    assert json.loads((tmp_path / "promoted" / "evaluate.json").read_text()) == REFERENCE
