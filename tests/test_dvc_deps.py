"""dvc.yaml's deps follow the package's rooms: a stage depends on exactly the subpackages (and
top-level modules) it imports, directly or through other modules, so a change there re-runs
it and a change elsewhere does not."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from componentx.candidates.registry import BUILTIN

SOURCE = ROOT / "src"
PACKAGE = SOURCE / "componentx"
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def imported_modules(path: Path) -> set[str]:
    """componentx modules a file imports (``from componentx.x import y`` counts x, and x.y
    where that is a module)."""
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


def room(file: Path) -> str:
    """A module's room: its subpackage's folder, or the top-level module file itself."""
    relative = file.relative_to(PACKAGE)
    target = PACKAGE / relative.parts[0] if len(relative.parts) > 1 else file
    return target.relative_to(ROOT).as_posix()


def reachable(path: Path) -> set[Path]:
    """Every componentx module file reachable from ``path`` by imports."""
    seen: set[Path] = set()
    pending = [path]
    while pending:
        for module in imported_modules(pending.pop()):
            file = module_file(module)
            if file.exists() and file not in seen:
                seen.add(file)
                pending.append(file)
    return seen


def loads_candidates(files: set[Path]) -> bool:
    """Whether any of ``files`` loads candidates by name (the registry's ``candidate_class``
    or ``load_candidate``, which import their modules then)."""
    return any(call in file.read_text() for file in files if file.name != "registry.py"
               for call in ("candidate_class(", "load_candidate("))


def candidate_rooms(names: list[str]) -> set[str]:
    """The rooms of the built-in candidates ``names`` (their modules' and what they
    import)."""
    found = set()
    for registration in BUILTIN:
        if registration.name in names:
            module = module_file(registration.module)
            found |= {room(module)} | {room(file) for file in reachable(module)}
    return found


def rooms(path: Path, candidate: str | None = None) -> set[str]:
    """The rooms of every componentx module reachable from ``path``; where it loads
    candidates by name, theirs too: the one the stage's command names, else every built-in
    one."""
    seen = reachable(path)
    found = {room(file) for file in seen}
    if loads_candidates(seen | {path}):
        found |= candidate_rooms([candidate] if candidate else [r.name for r in BUILTIN])
    return found


def test_the_walk_finds_indirect_imports():
    # stages/gate.py imports componentx.decisions.gate, which imports componentx.data.layout.
    assert "src/componentx/data" in rooms(ROOT / "stages" / "gate.py")


def test_the_gbdt_needs_no_torch():
    assert "src/componentx/sequence" not in rooms(ROOT / "stages" / "fit.py", "gbdt")
    assert "src/componentx/sequence" in rooms(ROOT / "stages" / "fit.py", "sequence")


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_deps_are_the_rooms_a_stage_imports(stage):
    spec = STAGES[stage]
    words = spec["cmd"].split()
    script = next(word for word in words if word.endswith(".py"))
    arguments = [w for w in words[words.index(script) + 1:] if not w.startswith("-")]
    deps = set(spec["deps"])
    assert script in deps
    declared = {d for d in deps if d.startswith("src/")}
    needed = rooms(ROOT / script, arguments[0] if arguments else None)
    assert not needed - declared, f"stage {stage} imports {sorted(needed - declared)}"
    assert not declared - needed, f"stage {stage} lists {sorted(declared - needed)}, unused"
