"""The registry: the one place that knows which candidates exist.

A candidate is registered by name with a title, its rank in simplicity (the gate's last
tie-break: lower is simpler) and where its class lives (``module:Class``), imported only when
a stage fits, scores or explains it, so the gate and the metrics never import a model
library. ``gate.candidates`` names the ones a run fits and ranks.

Candidates of your own: a module that calls :func:`register` for each (see the README, "Add a
candidate"), named in the environment variable ``COMPONENTX_CANDIDATES`` (modules separated
by commas, importable: e.g. on ``PYTHONPATH``). Only modules you name there are imported; a
bundle names its candidate, never code to run.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from componentx.errors import ParamsError, UserError

if TYPE_CHECKING:
    from componentx.candidates.interface import Candidate

PLUGINS_VARIABLE = "COMPONENTX_CANDIDATES"


@dataclass(frozen=True)
class Registration:
    """A candidate: ``name`` (its fit stage ``fit_<name>``, bundle kind, predictions and
    metrics files), ``title`` for people, ``simplicity`` (lower is simpler) and ``target``,
    ``module:Class`` of its :class:`~componentx.candidates.interface.Candidate`; a
    candidate of your own with a params section of its own gives its ``schema``
    (:class:`~componentx.params.Rule` per key)."""

    name: str
    title: str
    simplicity: int
    target: str
    schema: dict | None = None  # a candidate of your own: its params section's rules

    @property
    def module(self) -> str:
        return self.target.split(":")[0]


BUILTIN = (
    Registration("gbdt", "GBDT", 0, "componentx.gbdt.candidate:GBDT"),
    Registration("rocket", "MiniRocket", 1, "componentx.rocket.candidate:MiniRocket"),
    Registration("multirocket", "MultiRocket", 2, "componentx.rocket.multirocket:MultiRocket"),
    Registration("sequence", "sequence model", 3, "componentx.sequence.candidate:SequenceModel"),
)
_registered: dict[str, Registration] = {r.name: r for r in BUILTIN}
_plugins_loaded: set[str] = set()


def register(name: str, title: str, simplicity: int, target: str,
             schema: dict | None = None) -> None:
    """Register a candidate (from a module named in ``COMPONENTX_CANDIDATES``)."""
    if name in _registered and _registered[name].target != target:
        raise UserError(f"candidate {name!r} is registered twice ({_registered[name].target} "
                        f"and {target})")
    _registered[name] = Registration(name, title, simplicity, target, schema)


def _load_plugins() -> None:
    for module in filter(None, (m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "")
                                .split(","))):
        if module not in _plugins_loaded:
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise UserError(f"{PLUGINS_VARIABLE} names {module!r}, which cannot be "
                                f"imported ({error})") from None
            _plugins_loaded.add(module)


def registered() -> dict[str, Registration]:
    """Every registered candidate by name: the built-in ones and those of the modules named
    in ``COMPONENTX_CANDIDATES``."""
    _load_plugins()
    return dict(_registered)


def registration(name: str) -> Registration:
    """A registered candidate by name; an unknown one is a clear error."""
    found = registered()
    if name not in found:
        raise UserError(f"no candidate named {name!r} is registered (known: "
                        f"{', '.join(sorted(found))}); a candidate of your own is registered by "
                        f"a module named in {PLUGINS_VARIABLE}")
    return found[name]


def checked(name: str, params: dict) -> Registration:
    """A registered candidate whose params are valid: a candidate of your own with a
    ``schema`` has its section of ``params`` checked against it."""
    from componentx.params import section_problems

    found = registration(name)
    problems = [] if found.schema is None else section_problems(params, name, found.schema)
    if problems:
        raise ParamsError(f"params.yaml: {problems[0]}")
    return found


def chosen(params: dict) -> list[Registration]:
    """The candidates of ``gate.candidates``, in that order, each :func:`checked`."""
    try:
        return [checked(name, params) for name in params["gate"]["candidates"]]
    except UserError as error:
        raise ParamsError(f"gate.candidates: {error}") from None


def load_candidate(name: str, folder: Path, engine: str = "auto") -> Candidate:
    """A fitted candidate read from its folder, as data: one model, or the fold models of a
    cross-validation (:class:`~componentx.candidates.interface.FoldEnsemble`)."""
    from componentx.candidates.interface import FoldEnsemble

    member = candidate_class(name)
    if (Path(folder) / FoldEnsemble.META).is_file():
        return FoldEnsemble.load_members(folder, member, engine)
    return member.load(Path(folder), engine)


def loaded_candidate(name: str, folder: Path, engine: str = "auto") -> Candidate:
    """:func:`load_candidate`, read once per process for each folder as written (what a task
    on a cluster calls: its worker reads the candidate for its first bucket and keeps it; a
    stage writes a folder anew, a new inode, never files into the old one)."""
    written = Path(folder).stat()
    return _loaded(name, Path(folder), engine, (written.st_ino, written.st_mtime_ns))


@functools.lru_cache(maxsize=8)
def _loaded(name: str, folder: Path, engine: str, written: tuple[int, int]) -> Candidate:
    return load_candidate(name, folder, engine)


def candidate_class(name: str) -> type[Candidate]:
    """The class of a registered candidate (its module imported now)."""
    module, _, attribute = registration(name).target.partition(":")
    return getattr(importlib.import_module(module), attribute)
