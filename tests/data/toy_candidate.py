"""A candidate of one's own, in one module: the nearest class centroid of each window's mean
readouts (standardised), registered under the name ``toy``. The tests copy it into a project
and name it in COMPONENTX_CANDIDATES; nothing else of the project changes but params.yaml
(its section, its name in gate.candidates) and a fit stage in dvc.yaml."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from componentx.candidates.interface import Candidate, FitData, Windows
from componentx.candidates.registry import register
from componentx.decisions.priors import class_priors
from componentx.errors import BundleError
from componentx.params import number


def window_means(windows: Windows) -> np.ndarray:
    """(windows, features): each window's mean of its observed raw readouts (0 where none)."""
    values = windows.readouts.values
    observed = ~np.isnan(values)
    sums = np.vstack([np.zeros(values.shape[1]), np.cumsum(np.where(observed, values, 0), 0)])
    counts = np.vstack([np.zeros(values.shape[1]), np.cumsum(observed, 0)])
    start = windows.end_row - windows.length
    total = sums[windows.end_row] - sums[start]
    seen = counts[windows.end_row] - counts[start]
    return np.divide(total, seen, out=np.zeros_like(total), where=seen > 0)


class NearestCentroid(Candidate):
    """Logits: minus the squared distance to each class's centroid, over ``toy.temperature``."""

    sections = ("toy",)

    def fit(self, data: FitData) -> NearestCentroid:
        means, labels = data.fit.gather(window_means), data.fit.labels
        self.centre, self.scale = means.mean(axis=0), means.std(axis=0) + 1e-9
        scaled = (means - self.centre) / self.scale
        self.centroids = np.stack([scaled[labels == c].mean(axis=0) if (labels == c).any()
                                   else np.full(scaled.shape[1], 1e6)
                                   for c in range(data.num_classes)])
        self.temperature = float(self.params["toy"]["temperature"])
        self.train_priors = class_priors(labels, data.num_classes)
        return self

    def logits(self, windows: Windows, device: str = "cpu") -> np.ndarray:
        scaled = (window_means(windows) - self.centre) / self.scale
        distance = ((scaled[:, None, :] - self.centroids[None]) ** 2).sum(axis=2)
        return -distance / self.temperature

    def save(self, folder: Path) -> None:
        np.savez(folder / "toy.npz", centre=self.centre, scale=self.scale,
                 centroids=self.centroids, train_priors=self.train_priors)
        (folder / "toy.json").write_text(json.dumps({"temperature": self.temperature}))

    @classmethod
    def load(cls, folder: Path, engine: str = "auto") -> NearestCentroid:
        if engine != "auto":
            raise BundleError(f"{folder}: the toy has no --engine {engine}")
        model = cls({})
        with np.load(Path(folder) / "toy.npz", allow_pickle=False) as arrays:
            model.centre, model.scale = arrays["centre"], arrays["scale"]
            model.centroids, model.train_priors = arrays["centroids"], arrays["train_priors"]
        model.temperature = json.loads((Path(folder) / "toy.json").read_text())["temperature"]
        return model

    def describe(self) -> str:
        return "The nearest class centroid of a window's mean readouts"


register("toy", "nearest centroid", 3, "toy_candidate:NearestCentroid",
         schema={"temperature": number(above=0)})
