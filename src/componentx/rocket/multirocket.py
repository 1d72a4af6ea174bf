"""The MultiRocket candidate: sktime's public ``MultiRocketMultivariate`` transform (MiniRocket's
kernels on each window and on its first differences, four pooling operators each) of the
windows the sequence model reads (the channels that
:func:`~componentx.rocket.kernels.split_inputs` picks, and the numbers it sets beside them),
the specifications one-hot, and the linear head of
:mod:`componentx.rocket.head`.

**Padding.** MultiRocket reads series of one length. A window's real readouts are kept as
they are, right-aligned, and the readouts before its first are that first readout repeated
(a flat history: no jump the kernels would read as a pattern), up to the window's size or
:data:`MIN_LENGTH`, whichever is longer; an empty window is zeros. The stored left padding
is never read (tested with padding that shouts).

Saved as data: the transform's fitted parameter arrays and the head in ``multirocket.npz``
(loaded without pickle) and ``multirocket.json``; a loaded transform is sktime's class, fitted
on a two-window stand-in of the right shape, with those arrays put back. No torch.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from componentx.candidates.interface import Candidate, FitData, Windows
from componentx.data.features import FeatureStats
from componentx.decisions.priors import class_weights, training_priors
from componentx.errors import UserError
from componentx.rocket.head import LinearHead
from componentx.rocket.kernels import CHANNELS, read_saved, split_inputs, window_scores
from componentx.rocket.model import (
    KERNEL_SAMPLE,
    RIDGE_WINDOWS,
    fit_head_on_buckets,
    kernel_sample,
    one_hot,
)

log = logging.getLogger(__name__)
ARRAYS, META = "multirocket.npz", "multirocket.json"
MIN_LENGTH = 10  # readouts MultiRocket needs (9 for the kernels, one more for differences)
FULL_KERNELS, CAPPED_KERNELS = 6_216, 504  # 49,728 and 4,032 features (8 per kernel)
CHUNK = 1024  # windows transformed at a time
PARAMETERS = ("channels_per_combination", "channel_indices", "dilations",
              "features_per_dilation", "biases")  # the fitted parameter tuple, in order


def edge_padded(x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Left-padded windows ``x`` (windows, size, channels) as MultiRocket's input (windows,
    channels, max(size, MIN_LENGTH)) float64: the real readouts right-aligned, the first one
    repeated before them (see the module); an empty window is zeros."""
    n, size, _ = x.shape
    length = max(size, MIN_LENGTH)
    lengths = np.minimum(np.asarray(lengths, dtype=np.int64), size)
    step = np.arange(length)[None, :] - (length - size)  # position in the stored window
    first = (size - lengths)[:, None]
    rows = np.clip(np.maximum(step, first), 0, size - 1)
    out = x[np.arange(n)[:, None], rows].astype(np.float64)
    out[lengths == 0] = 0.0
    return np.ascontiguousarray(out.transpose(0, 2, 1))


class MultiRocket(Candidate):
    """MultiRocket features and a ridge head (``params.multirocket``)."""

    sections = ("multirocket",)

    def __init__(self, params: dict) -> None:
        super().__init__(params)
        self.settings = params.get("multirocket", {})

    def declines(self, windows: int) -> str | None:
        """More training windows than ``multirocket.max_windows``: MultiRocket is the
        small-data state of the art; measured on the default fleet (12,053 windows) its fit
        and fleet scoring add about a minute, over the main job's budget."""
        limit = self.settings["max_windows"]
        if windows <= limit:
            return None
        return (f"{windows:,} training windows, more than multirocket.max_windows "
                f"({limit:,}); raise it to fit MultiRocket here")

    def _transformer(self, kernels: int) -> object:
        from sktime.transformations.rocket import MultiRocketMultivariate

        return MultiRocketMultivariate(num_kernels=kernels, random_state=self.seed, n_jobs=-1)

    def _features(self, x: np.ndarray, lengths: np.ndarray, specs: np.ndarray) -> np.ndarray:
        convolved, beside = split_inputs(x, self.inputs, self.readouts)
        transformed = self.transform.transform(edge_padded(convolved, lengths))
        return np.concatenate([np.asarray(transformed, dtype=np.float32), beside,
                               one_hot(specs, self.spec_cardinalities)], axis=1)

    def fit(self, data: FitData) -> MultiRocket:
        windows = data.fit.window_set()
        labels, n, k = windows.labels, len(windows), data.num_classes
        if len(np.unique(labels)) < 2:
            raise UserError("multirocket: the windows it is fitted on hold a single class")
        self.seed, self.size, self.inputs = (self.settings["seed"], data.data.size,
                                             self.settings["channels"])
        self.stats, self.spec_cardinalities = (FeatureStats.load(data.data.stats),
                                               data.data.spec_cardinalities())
        self.readouts = len(self.stats.source_features)
        setting = self.settings["kernels"]
        self.kernels = int(setting) if setting != "auto" else (
            FULL_KERNELS if n <= RIDGE_WINDOWS else CAPPED_KERNELS)
        sample = kernel_sample(n, self.seed)
        convolved = split_inputs(windows.arrays(sample), self.inputs, self.readouts)[0]
        self.channels = convolved.shape[2]
        self.transform = self._transformer(self.kernels).fit(
            edge_padded(convolved, windows.length[sample]))
        weights = class_weights(self.settings["class_weights"], labels, k,
                                "multirocket.class_weights")
        self.head = fit_head_on_buckets(data.fit, self._features, self.stats, self.size, CHUNK,
                                        weights, k, self.settings, data.work, data.client)
        self.train_priors = training_priors(labels, weights, False, k)
        log.info("multirocket: %d features, %d windows fitted on (kernels' biases from %d), "
                 "%s head (penalty %.3g)", len(self.head.mean), n, min(n, KERNEL_SAMPLE),
                 self.head.kind, self.head.alpha)
        return self

    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        return window_scores(windows, self.stats, self.size, CHUNK,
                             lambda x, lengths, specs: self.head.scores(
                                 self._features(x, lengths, specs)),
                             len(self.head.intercept))

    def save(self, folder: Path) -> None:
        arrays = {"mean": self.head.mean, "scale": self.head.scale, "coef": self.head.coef,
                  "intercept": self.head.intercept}
        for which, parameter in (("raw", self.transform.parameter),
                                 ("diff", self.transform.parameter1)):
            arrays |= {f"{which}_{name}": array for name, array in zip(PARAMETERS, parameter,
                                                                      strict=True)}
        np.savez(folder / ARRAYS, **arrays)
        (folder / META).write_text(json.dumps({
            "kernels": self.kernels, "seed": self.seed, "size": self.size,
            "channels": self.channels, "inputs": self.inputs, "readouts": self.readouts,
            "spec_cardinalities": self.spec_cardinalities,
            "head": {"kind": self.head.kind, "alpha": self.head.alpha,
                     "errors": self.head.errors},
            "train_priors": self.train_priors.tolist(),
            "stats": json.loads(self.stats.to_json())}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> MultiRocket:
        """Read ``multirocket.npz`` as plain arrays (:func:`read_saved`)."""
        meta, arrays = read_saved(folder, META, ARRAYS, "MultiRocket", engine)
        model = cls({})
        model.kernels, model.seed, model.size = meta["kernels"], meta["seed"], meta["size"]
        model.channels, model.inputs, model.readouts = (  # before channels: every input
            meta["channels"], meta.get("inputs", "inputs"), meta.get("readouts", 0))
        model.spec_cardinalities = meta["spec_cardinalities"]
        model.stats = FeatureStats(**meta["stats"])
        model.train_priors = np.asarray(meta["train_priors"])
        head = meta["head"]
        model.head = LinearHead(head["kind"], arrays["mean"], arrays["scale"], arrays["coef"],
                                arrays["intercept"], head["alpha"], head["errors"])
        stand_in = np.zeros((2, model.channels, max(model.size, MIN_LENGTH)))
        model.transform = model._transformer(model.kernels).fit(stand_in)
        model.transform.parameter = tuple(arrays[f"raw_{name}"] for name in PARAMETERS)
        model.transform.parameter1 = tuple(arrays[f"diff_{name}"] for name in PARAMETERS)
        return model

    def describe(self) -> str:
        return (f"MultiRocket features ({8 * (self.kernels // 84) * 84:,}) of the last "
                f"{self.size} readouts of a vehicle and their differences "
                f"({CHANNELS[self.inputs]}), with a {self.head.describe()}")

    def report(self) -> dict:
        return {"kernels": self.kernels, "head": self.head.kind, "penalty": self.head.alpha}

    def calibration_method(self, requested: str) -> str:
        return self.head.calibration(requested)
