"""A shipped model: one folder holding data only, with everything needed to score new
readouts.

``bundle.json`` says what the model is and holds the feature list and transform statistics,
the specification vocabularies, the window size, the class windows and ``risk_class``, the
fitted calibration, the cost matrix and decision rule, and provenance (params, data and code
versions, the metrics it was evaluated with). Beside it: the model (``model.pt``, plain
weights, and ``model.onnx`` for a sequence model; ``model.txt`` or ``model.skops`` for the
GBDT baseline) and ``model_card.md``. Nothing in a bundle runs code when it is loaded: weights
are read with ``torch.load(..., weights_only=True)``, scikit-learn models with skops and a
fixed list of trusted types, and a bundle that needs more is refused.
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

BUNDLE_FORMAT = 2  # 2: data only (no pickle), risk_class from params
KINDS = ("sequence", "baseline")
CODE_SUFFIXES = (".pkl", ".pickle", ".joblib", ".dill", ".py")


def read_meta(folder: Path) -> dict:
    """``bundle.json`` of a bundle folder, checked for the format this code reads."""
    path = Path(folder) / "bundle.json"
    if not path.is_file():
        raise BundleError(f"{folder} is not a model bundle (no bundle.json); `dvc repro` "
                          "writes models/bundle")
    meta = json.loads(path.read_text())
    if meta.get("format") != BUNDLE_FORMAT or meta.get("kind") not in KINDS:
        raise BundleError(f"{path}: bundle format {meta.get('format')!r} / kind "
                          f"{meta.get('kind')!r} is not one this componentx reads (format "
                          f"{BUNDLE_FORMAT}: re-export it with this version)")
    code = sorted(p.name for p in Path(folder).iterdir() if p.suffix in CODE_SUFFIXES)
    if code:
        raise BundleError(f"{folder} holds {code}: refused, a bundle holds data only and "
                          "loading those could run code")
    return meta


def load_sequence_model(folder: Path) -> Any:
    """The sequence model of a bundle (eval mode), from ``model.pt`` read as data only."""
    import pickle

    import torch

    from componentx.sequence.models import model_from_state

    path = Path(folder) / "model.pt"
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0][:160]
        raise BundleError(f"{path} is not plain weights and was refused (loading it would run "
                          f"code: {reason})") from None
    return model_from_state(saved["config"], saved["model"])


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


def write_sequence_bundle(folder: Path, checkpoint: dict, meta: dict) -> None:
    """The sequence model of a checkpoint: its config and weights (``model.pt``), the ONNX
    export, and ``meta``."""
    import torch

    from componentx.sequence.models import model_from_state

    folder.mkdir(parents=True, exist_ok=True)
    model = model_from_state(checkpoint["config"], checkpoint["model"])
    torch.save({"config": checkpoint["config"], "model": model.state_dict()},
               folder / "model.pt")
    export_onnx(model, checkpoint["config"], folder, meta["window_size"])
    write_meta(folder, {**meta, "kind": "sequence", "model_config": checkpoint["config"],
                        "files": ["model.pt", "model.onnx"]})


def write_baseline_bundle(folder: Path, fitted_dir: Path, meta: dict) -> None:
    """The GBDT baseline: its fitted model files (``models/baseline``) and ``meta``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for path in sorted(Path(fitted_dir).iterdir()):
        shutil.copy2(path, folder / path.name)
        files.append(path.name)
    write_meta(folder, {**meta, "kind": "baseline", "files": files})


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
