"""A shipped model: one folder with everything needed to score new readouts.

``bundle.json`` says what the model is and holds the feature list and transform statistics,
the specification vocabularies, the window size, the class windows, the fitted calibration,
the cost matrix and decision rule, and provenance (params, data and code versions, the
metrics it was evaluated with). Beside it: the model (``model.pt`` and ``model.onnx`` for a
sequence model; ``model.txt`` or ``model.pkl`` for the GBDT baseline) and ``model_card.md``.
Reading a bundle needs numpy only (:func:`read_meta`); scoring is in ``componentx.scoring``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np

BUNDLE_FORMAT = 1
KINDS = ("sequence", "baseline")


def read_meta(folder: Path) -> dict:
    """``bundle.json`` of a bundle folder, checked for the format this code reads."""
    path = Path(folder) / "bundle.json"
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a model bundle (no bundle.json); `dvc repro` "
                                "writes models/bundle")
    meta = json.loads(path.read_text())
    if meta.get("format") != BUNDLE_FORMAT or meta.get("kind") not in KINDS:
        raise ValueError(f"{path}: bundle format {meta.get('format')!r} / kind "
                         f"{meta.get('kind')!r} is not one this componentx reads")
    return meta


def spec_vocabularies(train_specs: dict[str, list[str]]) -> dict[str, list[str]]:
    """Categories per specification column as learned on train (code = position + 1; 0 is
    unknown), the same coding as ``features.encode_specs``."""
    return {column: sorted({str(v) for v in values if v is not None})
            for column, values in train_specs.items()}


def export_onnx(model: object, config: dict, folder: Path, window: int) -> Path:
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
    """The sequence model: its weights and config, ONNX export, and ``meta``."""
    import torch

    from componentx.models import ModelConfig, build_model

    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(ModelConfig(**checkpoint["config"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
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


def _cost(report: dict, split: str) -> str:
    r = report[split]
    low, high = r["cost_total_ci"]
    return (f"{r['cost_total']:,.0f} (95% CI {low:,.0f}–{high:,.0f}; always class 0: "
            f"{r['cost_always_0']:,.0f})")


def model_card(meta: dict) -> str:
    """A short model card: what the model is, what it saw, how it scored, what it is for."""
    metrics, provenance = meta["metrics"], meta["provenance"]
    gate = metrics.get("gate", {})
    names = {"lstm": "An LSTM", "cnn_lstm": "A CNN-LSTM", "attention_lstm": "An attention-LSTM",
             "transformer": "A transformer"}
    what = (f"{names[meta['model_config']['arch']]} sequence classifier over the last "
            f"{meta['window_size']} readouts of a vehicle" if meta["kind"] == "sequence" else
            f"Gradient-boosted trees ({meta['library']}, {meta['iterations']} iterations) on "
            "summary features of a vehicle's history")
    vehicles = ", ".join(f"{n:,} {split}" for split, n in provenance["data"]["vehicles"].items())
    lines = [
        f"# Model card: componentx {meta['kind']} model", "",
        f"**What it is.** {what}, predicting the class of time to failure of SCANIA "
        f"Component X-style components ({meta['num_classes']} classes; class windows "
        f"{meta['class_windows']} time units, class 0 beyond). Probabilities are calibrated "
        f"({meta['calibration']['method']}, fitted on validation) to the deployment class "
        f"priors; the decision minimises the expected cost under the bundled cost matrix.",
        "",
        f"**Data it saw.** {vehicles or 'an unrecorded number of'} vehicles "
        f"({provenance['data']['source']} data, version {provenance['data']['version']}); "
        f"{len(meta['feature_columns'])} readout columns, specifications "
        f"{', '.join(meta['spec_columns']) or 'none'}. Trained on train, early-stopped and "
        "calibrated on validation, never on test.",
        "",
        f"**Scores** (total cost, lower is better): validation {_cost(metrics, 'validation')};"
        f" test {_cost(metrics, 'test')}.",
        f"The gate ({gate.get('split', 'validation')}) "
        f"{'ships this model' if meta.get('shipped') else 'did not choose this model'}.",
        "",
        "**Intended use.** Score the latest readouts of vehicles in the same data layout "
        "(`componentx predict --bundle <this folder> --readouts ...`): a maintenance "
        "decision per vehicle at least cost, and the risk of failure within the largest "
        "class window. Not for vehicles, sensors or usage unlike the training fleet's "
        "without checking; not a safety system.",
        "",
        f"**Provenance.** componentx {provenance['code']['version']}, commit "
        f"{provenance['code']['commit']}; params in `bundle.json`.",
    ]
    return "\n".join(lines) + "\n"
