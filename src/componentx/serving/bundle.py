"""A shipped model: one folder holding data only, with everything needed to score new
readouts.

``bundle.json`` says what the model is and holds the feature list and transform statistics,
the specification vocabularies, the window size, the class windows and ``risk_class``, the
fitted calibration, the cost matrix and decision rule, and provenance (params, data and code
versions, the metrics it was evaluated with). Beside it: the model (``model.pt``, plain
weights, and ``model.onnx`` for a sequence model; ``model.txt`` or ``model.skops`` for the
GBDT baseline; ``rocket.npz`` arrays for the kernel candidate) and ``model_card.md``.
Nothing in a bundle runs code when it is loaded: weights are read with ``torch.load(...,
weights_only=True)``, scikit-learn models with skops and a fixed list of trusted types,
arrays with ``np.load(..., allow_pickle=False)``, and a bundle that needs more is refused.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from componentx.errors import BundleError
from componentx.reports.model_card import model_card

BUNDLE_FORMAT = 3  # 2: data only (no pickle), risk_class from params; 3: patches, MiniRocket
KINDS = ("sequence", "baseline", "rocket")
CODE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".py")


REEXPORT = "export the bundle again (dvc repro export)"


def read_meta(folder: Path) -> dict:
    """``bundle.json`` of a bundle folder, checked: the format this code reads, every file it
    lists present, and nothing that would run code when loaded."""
    path = Path(folder) / "bundle.json"
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle (no bundle.json); `dvc repro` "
                          "writes models/bundle")
    try:
        meta = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(f"{path} is not readable JSON ({error}); {REEXPORT}") from None
    if not isinstance(meta, dict) or meta.get("format") != BUNDLE_FORMAT or meta.get(
            "kind") not in KINDS:
        raise BundleError(f"{path}: not a bundle of format {BUNDLE_FORMAT} that this "
                          f"componentx reads; {REEXPORT} with this version")
    code = sorted(p.name for p in Path(folder).iterdir() if p.suffix in CODE_SUFFIXES)
    if code:
        raise BundleError(f"{folder} holds {code}: refused, a bundle holds data only and "
                          "loading those could run code")
    missing = [name for name in meta.get("files", []) if not (Path(folder) / name).is_file()]
    if missing:
        raise BundleError(f"{folder} lacks {missing}, which bundle.json lists; {REEXPORT}")
    return meta


def load_sequence_model(folder: Path) -> Any:
    """The sequence model of a bundle (eval mode), from ``model.pt`` read as data only."""
    from componentx.errors import CheckpointError
    from componentx.sequence.checkpoints import load_model

    try:
        return load_model(Path(folder) / "model.pt", advice=REEXPORT)[0]
    except CheckpointError as error:
        raise BundleError(f"refused: {error}") from None


def export_onnx(model: Any, config: dict, folder: Path, window: int) -> Path:
    """``model.onnx``: the whole network (encoder, pooling, specification embeddings, head)
    with a dynamic batch dimension; inputs ``x``, ``lengths``, ``specs``, output ``logits``."""
    import torch

    n_specs = len(config["spec_cardinalities"])
    example = (torch.zeros((2, window, config["n_features"])), torch.tensor([window, 1]),
               torch.zeros((2, n_specs), dtype=torch.long))
    path = folder / "model.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(model, example, str(path), input_names=["x", "lengths", "specs"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in
                                        ("x", "lengths", "specs", "logits")})
    return path


def write_sequence_bundle(folder: Path, checkpoint: Path, meta: dict) -> None:
    """The sequence model of a checkpoint file: its config and weights (``model.pt``), the
    ONNX export, and ``meta``."""
    import torch

    from componentx.sequence.checkpoints import load_model

    folder.mkdir(parents=True, exist_ok=True)
    model, saved = load_model(checkpoint)
    torch.save({"config": saved["config"], "model": model.state_dict()}, folder / "model.pt")
    export_onnx(model, saved["config"], folder, meta["window_size"])
    write_meta(folder, {**meta, "kind": "sequence", "model_config": saved["config"],
                        "files": ["model.pt", "model.onnx"]})


def write_fitted_bundle(folder: Path, kind: str, fitted_dir: Path, meta: dict) -> None:
    """A candidate saved as files of data (the GBDT's ``models/baseline``, the kernel
    candidate's ``models/rocket``): those files and ``meta``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for path in sorted(Path(fitted_dir).iterdir()):
        shutil.copy2(path, folder / path.name)
        files.append(path.name)
    write_meta(folder, {**meta, "kind": kind, "files": files})


def write_meta(folder: Path, meta: dict) -> None:
    meta = {"format": BUNDLE_FORMAT, **meta}
    (folder / "bundle.json").write_text(json.dumps(meta, indent=1, default=_plain) + "\n")
    (folder / "model_card.md").write_text(model_card(meta))


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to bundle.json")
