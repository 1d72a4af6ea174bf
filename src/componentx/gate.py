"""Promotion gate: is a run better than a reference (the baseline, or a promoted run)?"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from componentx.runtime import atomic_dir


def gate_verdict(run: dict, reference: dict, split: str, ece_tolerance: float) -> dict:
    """Pass when cost is lower, macro PR-AUC not lower, Brier not higher, and ECE at most the
    reference's plus ``ece_tolerance``, all on ``split``."""
    if split not in run or split not in reference:
        raise ValueError(f"gate.split {split!r} is missing from the run or the reference metrics")
    ours, theirs = run[split], reference[split]
    checks = {
        "cost_total": (ours["cost_total"], theirs["cost_total"],
                       ours["cost_total"] < theirs["cost_total"]),
        "pr_auc_macro": (ours["pr_auc"]["macro"], theirs["pr_auc"]["macro"],
                         ours["pr_auc"]["macro"] >= theirs["pr_auc"]["macro"]),
        "brier": (ours["brier"], theirs["brier"], ours["brier"] <= theirs["brier"]),
        "ece": (ours["ece"], theirs["ece"], ours["ece"] <= theirs["ece"] + ece_tolerance),
    }
    return {
        "passed": all(passed for *_, passed in checks.values()),
        "split": split,
        "checks": {name: {"run": run_value, "reference": reference_value, "passed": passed}
                   for name, (run_value, reference_value, passed) in checks.items()},
    }


def format_verdict(verdict: dict, reference: str) -> str:
    lines = [f"gate {'PASSED' if verdict['passed'] else 'FAILED'} against {reference} "
             f"({verdict['split']}):"]
    for name, check in verdict["checks"].items():
        lines.append(f"  {'ok  ' if check['passed'] else 'FAIL'} {name:13} run "
                     f"{check['run']:.4g}  reference {check['reference']:.4g}")
    return "\n".join(lines)


def promote(model: Path, metrics: Path, gate: Path, target: Path, force: bool = False) -> None:
    """Copy a model that passed the gate, with its metrics, to ``target`` (atomically)."""
    verdict = json.loads(gate.read_text())
    if not verdict["passed"] and not force:
        raise ValueError(f"{gate} says the gate failed; nothing promoted (use --force to "
                         "promote anyway)")
    with atomic_dir(target) as tmp:
        shutil.copy2(model, tmp / "model.pt")
        shutil.copy2(metrics, tmp / "evaluate.json")
        shutil.copy2(gate, tmp / "gate.json")
