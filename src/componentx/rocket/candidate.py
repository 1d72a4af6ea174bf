"""The MiniRocket candidate: kernel features of the windows the sequence model reads
(:mod:`componentx.rocket.model`), computed from raw readouts with the train statistics it
was fitted with.

Saved as data: the arrays in ``rocket.npz`` (loaded without pickle) and ``rocket.json``. No
torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from componentx.candidates.interface import Candidate, FitData, Windows
from componentx.data.features import FeatureStats
from componentx.errors import BundleError
from componentx.rocket.kernels import CHANNELS, CHUNK, read_saved, window_scores
from componentx.rocket.model import FittedRocket, fit_rocket

ARRAYS, META = "rocket.npz", "rocket.json"


class MiniRocket(Candidate):
    """MiniRocket features and a logistic head (``params.rocket``)."""

    sections = ("rocket",)

    def __init__(self, params: dict) -> None:
        super().__init__(params)
        self.settings = params.get("rocket", {})

    def fit(self, data: FitData) -> MiniRocket:
        self.stats, self.size = FeatureStats.load(data.data.stats), data.data.size
        self.model, self.train_priors = fit_rocket(
            data.fit, data.num_classes, self.stats, self.size, data.data.spec_cardinalities(),
            self.settings, data.work, data.client)
        return self

    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        return window_scores(windows, self.stats, self.size, CHUNK, self.model.logits,
                             len(self.model.head.intercept))

    def save(self, folder: Path) -> None:
        np.savez(folder / ARRAYS, **self.model.to_arrays())
        (folder / META).write_text(json.dumps({
            "features": self.model.kernels.n_features, "size": self.size,
            "channels": self.model.channels, "readouts": self.model.readouts,
            "spec_cardinalities": self.model.spec_cardinalities,
            "head": {"kind": self.model.head.kind, "alpha": self.model.head.alpha,
                     "errors": self.model.head.errors},
            "train_priors": self.train_priors.tolist(), "stats": json.loads(
                self.stats.to_json())}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> MiniRocket:
        """Read ``rocket.npz`` as plain arrays (:func:`read_saved`)."""
        meta, arrays = read_saved(folder, META, ARRAYS, "MiniRocket", engine)
        try:
            model = FittedRocket.from_arrays(  # before rocket.channels: every input
                arrays, meta.get("channels", "inputs"), meta.get("readouts", 0),
                meta["spec_cardinalities"], meta["head"])
        except (ValueError, KeyError, TypeError) as error:
            raise BundleError(f"{folder}: the MiniRocket model cannot be read ({error})"
                              ) from None
        candidate = cls({})
        candidate.model, candidate.size = model, meta["size"]
        candidate.stats = FeatureStats(**meta["stats"])
        candidate.train_priors = np.asarray(meta["train_priors"])
        return candidate

    def describe(self) -> str:
        return (f"MiniRocket kernel features ({self.model.kernels.n_features:,}) of the last "
                f"{self.size} readouts of a vehicle ({CHANNELS[self.model.channels]}) with a "
                f"{self.model.head.describe()}")

    def report(self) -> dict:
        return {"kernel_features": self.model.kernels.n_features,
                "head": self.model.head.kind, "penalty": self.model.head.alpha}

    def calibration_method(self, requested: str) -> str:
        return self.model.head.calibration(requested)
