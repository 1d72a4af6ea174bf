"""Promotion: the bundle the gate ships, with that model's predictions, copied to a folder that
later runs are gated against (``gate.reference: promoted/predictions``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from componentx.errors import UserError
from componentx.runtime import atomic_dir


def promote(bundle: Path, gate: Path, target: Path, force: bool = False) -> str:
    """Copy the bundle the gate ships, with that model's predictions, to ``target``
    (atomically); ``--force`` promotes the sequence model's bundle whatever the gate said.
    Returns the promoted model's kind."""
    bundle, gate = Path(bundle), Path(gate)
    if not gate.is_file() or not (bundle / "bundle.json").is_file():
        raise UserError(f"no gate verdict ({gate}) or shipped bundle ({bundle}) yet: run the "
                        "pipeline first (dvc repro)")
    verdict = json.loads(gate.read_text())
    if force:
        bundle = bundle.parent / "bundles" / "sequence"
    kind = json.loads((bundle / "bundle.json").read_text())["kind"]
    if Path(target).resolve() == Path(verdict["reference"]).resolve().parent and not force \
            and verdict["ship"] == "reference":
        raise UserError(f"{gate}: the gate keeps {target}/ (the run is not clearly cheaper); "
                         "nothing to promote (--force promotes the run anyway)")
    predictions = Path("data/predictions" if kind == "sequence" else "data/baseline_predictions")
    with atomic_dir(target) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        shutil.copytree(predictions, tmp / "predictions")
        shutil.copy2(gate, tmp / "gate.json")
    return kind
