"""Every library module a stage imports, directly or through other modules, is one of its dvc.yaml
deps: otherwise a change there would not re-run the stage."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

SOURCE = ROOT / "src"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def imported_modules(path: Path) -> set[str]:
    """componentx modules a file imports (``from componentx import x`` counts as x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("componentx")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("componentx"):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names
                      if module_file(f"{node.module}.{a.name}").exists()}
    return found


def module_file(module: str) -> Path:
    path = SOURCE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def closure(path: Path) -> set[str]:
    """Files of every componentx module reachable from ``path`` (relative to the root)."""
    seen: set[Path] = set()
    pending = [path]
    while pending:
        for module in imported_modules(pending.pop()):
            file = module_file(module)
            if file.exists() and file not in seen:
                seen.add(file)
                pending.append(file)
    return {file.relative_to(ROOT).as_posix() for file in seen}


def test_the_walk_finds_indirect_imports():
    # stages/gate.py imports componentx.gate, which imports evaluation, which imports decisions.
    assert "src/componentx/decisions.py" in closure(ROOT / "stages" / "gate.py")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_dependency(stage):
    spec = STAGES[stage]
    script = spec["cmd"].split()[-1]
    deps = set(spec["deps"])
    assert script in deps
    missing = sorted(closure(ROOT / script) - deps)
    assert not missing, f"stage {stage} imports {missing} but does not list them in deps"
