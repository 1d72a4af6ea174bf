"""A shipped model: one folder holding data only, with everything needed to score new
readouts.

``bundle.json`` says which candidate it is (``kind``, a registered candidate's name) and
holds the feature and specification columns, the specification vocabularies, the window
size, the class windows and ``risk_class``, the fitted calibration, the cost matrix and
decision rule, provenance (params, data and code versions, the metrics it was evaluated
with) and what the candidate's fit chose. Beside it: the files the candidate saved (its
:meth:`~componentx.candidates.interface.Candidate.save`, e.g. ``model.onnx`` and
``model.pt``, ``model.txt``, ``rocket.npz``) and ``model_card.md``. Nothing in a bundle runs
code when it is loaded: every candidate reads its files as data (``torch.load(...,
weights_only=True)``, skops with a fixed list of trusted types, ``np.load(...,
allow_pickle=False)``), and a bundle that needs more is refused.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from componentx.candidates.interface import Candidate, Windows
from componentx.candidates.registry import load_candidate, registered
from componentx.decisions.calibration import Calibrator
from componentx.decisions.rules import failure_risk
from componentx.errors import BundleError
from componentx.reports.model_card import model_card

BUNDLE_FORMAT = 4  # 3: three fixed kinds; 4: any registered candidate, its own files
CODE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".py")
REEXPORT = "export the bundle again (dvc repro export)"


def read_meta(folder: Path) -> dict:
    """``bundle.json`` of a bundle folder, checked: the format this code reads, a registered
    candidate, every file it lists present, and nothing that would run code when loaded."""
    path = Path(folder) / "bundle.json"
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle (no bundle.json); `dvc repro` "
                          "writes models/bundle")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path} is not readable JSON ({error}); {REEXPORT}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT:
        raise BundleError(f"{path}: not a bundle of format {BUNDLE_FORMAT} that this "
                          f"componentx reads; {REEXPORT} with this version")
    if meta.get("kind") not in registered():
        raise BundleError(f"{path}: its candidate {meta.get('kind')!r} is not registered here "
                          f"(known: {', '.join(sorted(registered()))}); a candidate of your "
                          "own is registered by a module named in COMPONENTX_CANDIDATES")
    code = sorted(p.relative_to(folder).as_posix() for p in Path(folder).rglob("*")
                  if p.suffix in CODE_SUFFIXES)
    if code:
        raise BundleError(f"{folder} holds {code}: refused, a bundle holds data only and "
                          "loading those could run code")
    missing = [name for name in meta.get("files", []) if not (Path(folder) / name).is_file()]
    if missing:
        raise BundleError(f"{folder} lacks {missing}, which bundle.json lists; {REEXPORT}")
    return meta


@dataclass
class Bundle:
    """A loaded bundle: its ``meta`` (``bundle.json``), its candidate's model and the fitted
    calibration."""

    folder: Path
    meta: dict
    model: Candidate
    calibrator: Calibrator

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> Bundle:
        """Read a bundle as data (:func:`read_meta`, then its candidate's own loader)."""
        meta = read_meta(folder)
        model = load_candidate(meta["kind"], Path(folder), engine)
        return cls(Path(folder), meta, model, Calibrator.from_dict(meta["calibration"]))

    @property
    def cost_matrix(self) -> np.ndarray:
        return np.asarray(self.meta["cost_matrix"], dtype=float)

    def probabilities(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        """Calibrated probabilities (windows, classes) of one bucket's windows."""
        return self.calibrator.probabilities(self.model.logits(windows, device))

    def risk(self, probs: np.ndarray) -> np.ndarray:
        """:func:`~componentx.decisions.rules.failure_risk` at the bundle's ``risk_class``."""
        return failure_risk(probs, self.meta["risk_class"])


def write_bundle(folder: Path, fitted: Path, meta: dict) -> None:
    """A candidate's fitted folder (``fitted``: what it saved and ``fit.json``) as a bundle:
    its files, ``bundle.json`` (``meta``) and the model card."""
    shutil.copytree(fitted, folder, dirs_exist_ok=True)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    meta = {"format": BUNDLE_FORMAT, **meta, "files": files}
    (folder / "bundle.json").write_text(json.dumps(meta, indent=1, default=_plain) + "\n")
    (folder / "model_card.md").write_text(model_card(meta))


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to bundle.json")
