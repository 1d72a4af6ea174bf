"""The sequence-model candidate: an LSTM-family, transformer or convolutional classifier
(``params.model``) trained by the loop of :mod:`componentx.sequence.training`
(``params.train``) on the inputs stage's model inputs, early-stopped on the windows it tunes
on, resumable, logged to dvclive and the trackers.

Saved as data: ``model.pt`` (config and weights, read with ``weights_only``), its ONNX
export ``model.onnx`` (scored with ONNX Runtime, without torch) and ``sequence.json``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from componentx.candidates.interface import Candidate, FitData, Windows
from componentx.data.features import FeatureStats, window_input_batches
from componentx.data.window_set import input_names
from componentx.devices import resolve_device
from componentx.errors import BundleError, CheckpointError, ParamsError, UserError
from componentx.tracking import EpochLog

log = logging.getLogger(__name__)
META, WEIGHTS, ONNX = "sequence.json", "model.pt", "model.onnx"
ENGINES = ("auto", "onnx", "torch")
BATCH = 2048  # windows scored at a time
INTEGRATION_STEPS = 32  # integrated gradients
ADVICE = "fit the model again (dvc repro -f fit_sequence) or export it again"


def finished_run(path: Path, key: str) -> bool:
    """Whether ``path`` (a ``last.pt``) is a finished run of these params and inputs (a fold
    of an interrupted cross-validation, or a fit whose stage stopped before writing)."""
    from componentx.sequence.checkpoints import load_checkpoint

    if not path.exists():
        return False
    checkpoint = load_checkpoint(path)
    return checkpoint.get("fingerprint") == key and bool(checkpoint["state"].get("finished"))


def pretrained_encoder(path: Path, init: str, model_config: Any) -> dict | None:
    """The pre-trained encoder's weights for ``train.init: pretrained`` (None for scratch);
    it must have been pre-trained with the same model config."""
    if init == "scratch":
        return None
    from componentx.sequence.checkpoints import load_checkpoint

    checkpoint = load_checkpoint(path, required=("encoder",))
    if checkpoint["encoder"] is None:
        raise ParamsError("train.init is 'pretrained' but pretrain.epochs is 0: set "
                          "pretrain.epochs > 0 (dvc exp run -S pretrain.epochs=5)")

    def shape(config: dict) -> dict:
        return {k: v for k, v in config.items() if k != "spec_cardinalities"}

    if shape(checkpoint["config"]) != shape(model_config.to_dict()):
        raise UserError(f"{path} was pre-trained with another model config; re-run the "
                        "pretrain stage (dvc repro pretrain)")
    return checkpoint["encoder"]


def join_process_group(device: str) -> None:
    """Under torchrun, join its process group once (NCCL on GPUs, gloo on CPUs), left when
    the process ends."""
    import torch.distributed as dist

    if "LOCAL_RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
        atexit.register(dist.destroy_process_group)


class SequenceModel(Candidate):
    """A sequence classifier over the last ``window.size`` readouts."""

    sections = ("train", "model")
    tunes = True

    def __init__(self, params: dict) -> None:
        super().__init__(params)
        self.module: Any = None
        self.sessions: dict[str, Any] = {}
        self.folder: Path | None = None

    def fit(self, data: FitData) -> SequenceModel:
        from componentx.sequence.checkpoints import (
            load_checkpoint,
            load_model,
            resumable_checkpoint,
        )
        from componentx.sequence.config import TrainConfig
        from componentx.sequence.models import ModelConfig
        from componentx.sequence.training import train

        params = self.params
        config = TrainConfig(**params["train"], device=params["compute"]["device"])
        join_process_group(resolve_device(config.device))
        fit_set = data.fit.window_set()
        tune_set = None if data.tune is None else data.tune.window_set()
        model_config = ModelConfig(**params["model"], n_features=fit_set.n_inputs,
                                   window=data.data.size, num_classes=data.num_classes,
                                   spec_cardinalities=data.data.spec_cardinalities())
        encoder = pretrained_encoder(data.data.pretrained, config.init, model_config)
        data.work.mkdir(parents=True, exist_ok=True)
        if not finished_run(data.work / "last.pt", data.key):
            resume_from = (resumable_checkpoint(data.work / "last.pt", data.key)
                           if config.resume else None)
            with EpochLog(data.live, params["tracking"], data.run, data.key,
                          resume_from is not None, data.main_process and data.live is not None
                          ) as epoch_log:
                epoch_log.start(params, {"train": params["train"], "model": params["model"],
                                         "window_size": data.data.size})
                state = train(model_config, config, fit_set, tune_set, data.cost_matrix,
                              data.work, data.key, resume_from, epoch_log.on_epoch_end, encoder)
                epoch_log.log_artifacts([data.work / "best.pt"], "checkpoints")
            log.info("kept the model of epoch %d of %d", state.stopping.best_epoch, state.epoch)
        if not data.main_process:  # only the main process wrote the checkpoints
            return self
        self.module, checkpoint = load_model(data.work / "best.pt")
        self.train_priors = np.asarray(checkpoint["train_priors"])
        self.config, self.train_config = checkpoint["config"], checkpoint["train_config"]
        state = load_checkpoint(data.work / "last.pt")["state"]  # the whole run's
        self.best_epoch, self.epochs = state["stopping"]["best_epoch"], state["epoch"]
        self.history = state["history"]
        self.stats, self.size = FeatureStats.load(data.data.stats), data.data.size
        return self

    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        readouts = windows.readouts
        parts = []
        for start, x in zip(range(0, len(windows), BATCH), window_input_batches(
                readouts.values, readouts.times, readouts.vehicles, windows.end_row,
                windows.length, windows.ref_time, self.stats, self.size, BATCH), strict=True):
            lengths = windows.length[start:start + BATCH].astype(np.int64)
            specs = windows.specs[start:start + BATCH].astype(np.int64)
            parts.append(self._forward(x, lengths, specs, device))
        return (np.concatenate(parts).astype(np.float64) if parts
                else np.zeros((0, self.config["num_classes"])))

    def _forward(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray, device: str
                 ) -> np.ndarray:
        if self.module is None:
            return self._session(device).run(None, {"x": x, "lengths": lengths,
                                                    "specs": specs})[0]
        import torch

        with torch.no_grad():
            self.module.to(device)
            return self.module(torch.from_numpy(x).to(device), torch.from_numpy(lengths),
                               torch.from_numpy(specs).to(device)).float().cpu().numpy()

    def _session(self, device: str) -> Any:
        """An ONNX Runtime session of ``model.onnx`` on ``device`` (CUDA's provider where
        ONNX Runtime has it), made once per device."""
        if device not in self.sessions:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            # idle threads sleep rather than spin: beside a server's event loop, or
            # Dask's threads, a spinning thread takes the core they need
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            providers = (["CUDAExecutionProvider"] if device.startswith("cuda") and
                         "CUDAExecutionProvider" in onnxruntime.get_available_providers()
                         else []) + ["CPUExecutionProvider"]
            try:
                self.sessions[device] = onnxruntime.InferenceSession(
                    str(self.folder / ONNX), options, providers=providers)
            except Exception as error:  # onnxruntime's own types for a damaged file
                reason = (str(error).strip().splitlines() or [""])[0][:200]
                raise BundleError(f"{self.folder / ONNX} cannot be loaded ({reason}); "
                                  f"{ADVICE}") from None
        return self.sessions[device]

    def save(self, folder: Path) -> None:
        import torch

        module = self.module.cpu()
        torch.save({"config": self.config, "model": module.state_dict()}, folder / WEIGHTS)
        export_onnx(module, self.config, folder / ONNX, self.size)
        (folder / META).write_text(json.dumps({
            "size": self.size, "model_config": self.config,
            "train_priors": self.train_priors.tolist(),
            "train_config": self.train_config, "best_epoch": self.best_epoch,
            "epochs": self.epochs, "history": self.history,
            "stats": json.loads(self.stats.to_json())}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> SequenceModel:
        """The model of ``folder``: run by ONNX Runtime (``auto``, ``onnx``: no torch) or by
        torch (``torch``: ``model.pt`` read with ``weights_only``)."""
        if engine not in ENGINES:
            raise UserError(f"--engine must be one of {ENGINES}, got {engine!r}")
        try:
            meta = json.loads((Path(folder) / META).read_text())
        except (OSError, ValueError) as error:
            raise BundleError(f"{folder}: {META} cannot be read ({error}); {ADVICE}") from None
        model = cls({})
        model.folder = Path(folder)
        model.size, model.train_priors = meta["size"], np.asarray(meta["train_priors"])
        model.train_config, model.stats = meta["train_config"], FeatureStats(**meta["stats"])
        model.best_epoch, model.epochs = meta["best_epoch"], meta["epochs"]
        model.history = meta["history"]
        model.config = meta["model_config"]
        if engine == "torch":
            model._load_torch()
        else:
            model._session("cpu")  # a damaged export stops here
        return model

    def _load_torch(self) -> None:
        from componentx.sequence.checkpoints import load_model

        try:
            self.module, checkpoint = load_model(self.folder / WEIGHTS, advice=ADVICE)
        except CheckpointError as error:
            raise BundleError(f"refused: {error}") from None
        self.config = checkpoint["config"]

    def processes(self) -> int:
        return self.params["train"]["nproc"]

    def describe(self) -> str:
        from componentx.reports.model_card import architecture

        return (f"{architecture(self.config['arch'])} sequence classifier over the last "
                f"{self.size} readouts of a vehicle")

    def report(self) -> dict:
        return {"best_epoch": self.best_epoch, "epochs": self.epochs}

    def calibration_method(self, requested: str) -> str:
        from componentx.decisions.calibration import calibration_method

        return calibration_method(requested, self.train_config["loss"],
                                  self.train_config["label_smoothing"])

    def attributions(self, windows: Windows, target: np.ndarray, device: str = "cpu"
                     ) -> tuple[list[str], np.ndarray] | None:
        """Integrated gradients of the ``target`` logit, summed over each window's readouts."""
        import torch

        from componentx.sequence.explain import integrated_gradients

        if self.module is None:
            self._load_torch()
        readouts = windows.readouts
        x = np.concatenate(list(window_input_batches(
            readouts.values, readouts.times, readouts.vehicles, windows.end_row,
            windows.length, windows.ref_time, self.stats, self.size, BATCH)))
        found = integrated_gradients(self.module.cpu(), torch.from_numpy(x),
                                     torch.from_numpy(windows.length.astype(np.int64)),
                                     torch.from_numpy(windows.specs.astype(np.int64)),
                                     torch.from_numpy(np.asarray(target, dtype=np.int64)),
                                     INTEGRATION_STEPS)
        return input_names(self.stats), found.detach().numpy().sum(axis=1)


def export_onnx(module: Any, config: dict, path: Path, window: int) -> None:
    """The whole network (encoder, pooling, specification embeddings, head) as ONNX with a
    dynamic batch dimension; inputs ``x``, ``lengths``, ``specs``, output ``logits``."""
    import torch

    example = (torch.zeros((2, window, config["n_features"])), torch.tensor([window, 1]),
               torch.zeros((2, len(config["spec_cardinalities"])), dtype=torch.long))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
        torch.onnx.export(module, example, str(path), input_names=["x", "lengths", "specs"],
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={name: {0: "batch"} for name in
                                        ("x", "lengths", "specs", "logits")})
