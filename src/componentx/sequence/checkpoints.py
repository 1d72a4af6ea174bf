"""Checkpoints: written atomically, read as data only, and turned back into models one way.

A checkpoint is a ``torch.save`` of plain data (tensors, numbers, strings, lists, dicts):
the model config and weights and, for the training run's own ``last.pt``, the optimizer,
scheduler, scaler and RNG states. It is read with ``torch.load(..., weights_only=True)``, so
a file carrying a pickled object is refused instead of executed.
"""

from __future__ import annotations

import io
import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from componentx.errors import CheckpointError
from componentx.runtime import atomic_write_bytes
from componentx.sequence.models import ModelConfig, build_model

log = logging.getLogger(__name__)


def rng_state() -> dict[str, Any]:
    """The Python, numpy and torch random states, as plain data."""
    name, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    state = {"python": random.getstate(),
             "numpy": [name, keys.tolist(), position, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss,  # noqa: NPY002
                         cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a kill during the save leaves the old file intact."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


RESTART = "delete it to start training from scratch"


def load_checkpoint(path: Path, required: tuple[str, ...] = ("config", "model", "state"),
                    advice: str = RESTART) -> dict[str, Any]:
    """Read a checkpoint as data only; a missing, damaged, foreign or code-carrying file is a
    :class:`CheckpointError` saying what it is and ``advice``."""
    if not Path(path).is_file():
        raise CheckpointError(f"{path} not found; {advice}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} cannot be read: it holds objects beyond plain data "
                              f"(written by an older componentx, or not by componentx); "
                              f"{advice}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:  # a damaged file
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} cannot be read ({type(error).__name__}: {reason}); "
                              f"{advice}") from None
    missing = set(required) - set(payload) if isinstance(payload, dict) else set(required)
    if missing:
        raise CheckpointError(f"{path} is not a componentx checkpoint (missing "
                              f"{sorted(missing)}); {advice}")
    return payload


def resumable_checkpoint(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is an unfinished run of the same params and inputs."""
    if not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.get("fingerprint") != fingerprint:
        log.info("%s was trained with other params or inputs: starting fresh", path)
        return None
    if checkpoint["state"].get("finished"):
        log.info("%s is a finished run: starting fresh", path)
        return None
    return checkpoint


RETRAIN = "train the model again (dvc repro -f train)"


def load_model(path: Path, device: torch.device | str = "cpu", advice: str = RETRAIN
               ) -> tuple[nn.Module, dict]:
    """The model of a checkpoint (eval mode, on ``device``) and the checkpoint itself."""
    checkpoint = load_checkpoint(Path(path), ("config", "model"), advice)
    try:
        config = ModelConfig(**checkpoint["config"])
    except TypeError as error:  # keys of another version
        raise CheckpointError(f"{path} holds a model config this componentx does not know "
                              f"({error}); {advice}") from None
    model = build_model(config)
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:  # weights of another shape
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(f"{path} does not match its model config ({reason}); "
                              f"{advice}") from None
    return model.eval().to(device), checkpoint
