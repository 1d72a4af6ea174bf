"""Promotion: the bundle the gate ships, with that model's predictions, copied to a folder that
later runs are gated against (``gate.reference: promoted/predictions``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from componentx.errors import UserError
from componentx.runtime import atomic_dir

README = """# {target}/

`componentx promote` copies the bundle the gate ships here, with that model's predictions
(`predictions/`) and the gate's verdict (`gate.json`). Set `gate.reference:
{target}/predictions` in `params.yaml` and later runs ship a candidate only when it is
clearly cheaper than this model (README, "The gate"); the gate and export stages depend on
this folder.
"""


def promote(bundle: Path, gate: Path, target: Path, force: bool = False,
            predictions: Path = Path("data/predictions")) -> str:
    """Copy the bundle the gate ships, with that model's predictions (``predictions/{name}``
    for a candidate), to ``target`` (atomically); ``--force`` promotes the gate's chosen
    candidate even where a promoted model stays. Returns the promoted model's kind."""
    bundle, gate, target = Path(bundle), Path(gate), Path(target)
    if not gate.is_file() or not (bundle / "bundle.json").is_file():
        raise UserError(f"no gate verdict ({gate}) or shipped bundle ({bundle}) yet: run the "
                        "pipeline first (dvc repro)")
    verdict = json.loads(gate.read_text())
    kept = verdict["ship"] == "reference" and not force
    if kept and target.resolve() == Path(verdict["reference"]["path"]).resolve().parent:
        raise UserError(f"{gate}: the gate keeps {target}/ (the chosen candidate is not "
                        "clearly cheaper); nothing to promote (--force promotes it anyway)")
    if force:
        bundle = bundle.parent / "bundles" / verdict["chosen"]
    kind = json.loads((bundle / "bundle.json").read_text())["kind"]
    source = (Path(verdict["reference"]["path"]) if kept
              else Path(predictions) / verdict["chosen"])
    with atomic_dir(target) as tmp:
        shutil.copytree(bundle, tmp, dirs_exist_ok=True)
        shutil.copytree(source, tmp / "predictions", dirs_exist_ok=True)
        shutil.copy2(gate, tmp / "gate.json")
        (tmp / "README.md").write_text(README.format(target=target))
    return kind
