"""Experiment tracking where teams already look, beside dvclive: MLflow and TensorBoard.

Both are off by default (``params.yaml`` section ``tracking``). The train stage opens an MLflow
run named ``{data_version}-w{window}-{arch}-{run}`` and logs the params, every epoch's metrics
and the best checkpoint; the evaluate stage finds that run again by the train fingerprint it
is tagged with and adds the final metrics and the evaluation plots. TensorBoard gets the same
scalars as event files under ``tracking.tensorboard_dir/<run name>``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from componentx.errors import StageError

FINGERPRINT_TAG = "componentx.train_fingerprint"


class TrackingError(StageError):
    """A tracking option is on but cannot be used."""


def _require(module: str, option: str, extra: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise TrackingError(f"{option} is true but {module.split('.')[0]} is not installed: "
                            f"pip install -e .[{extra}] (or set {option}: false)") from None


def flatten(values: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``a.b.c`` keys; lists kept as they are."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_name(data_files: list[Path], window: int, arch: str, fingerprint: str) -> str:
    """``{data_version}-w{window}-{arch}-{run}``: short hashes of the data and of the run."""
    digest = hashlib.sha256()
    for path in data_files:
        digest.update(Path(path).read_bytes())
    return f"{digest.hexdigest()[:8]}-w{window}-{arch}-{fingerprint[:6]}"


class Tracker:
    """Logs to MLflow and/or TensorBoard as ``settings`` (``params.tracking``) asks."""

    def __init__(self, settings: dict, name: str, fingerprint: str) -> None:
        self.settings, self.name, self.fingerprint = settings, name, fingerprint
        self.mlflow = self.writer = None
        if settings["mlflow"]:
            self.mlflow = _require("mlflow", "tracking.mlflow", "mlflow")
            uri = settings["mlflow_uri"]
            if "://" not in uri and not uri.startswith("file:"):
                # A local folder: MLflow's file store, which MLflow now only keeps maintained.
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
                uri = Path(uri).resolve().as_uri()
            self.mlflow.set_tracking_uri(uri)
            self.mlflow.set_experiment(settings["mlflow_experiment"])
        if settings["tensorboard"]:
            tensorboard = _require("torch.utils.tensorboard", "tracking.tensorboard",
                                   "tensorboard")
            self.writer = tensorboard.SummaryWriter(
                log_dir=str(Path(settings["tensorboard_dir"]) / name))

    def start(self, params: dict | None = None, resume: bool = False) -> None:
        """Open the run (again, when ``resume`` and a run with this fingerprint exists)."""
        if self.mlflow is None:
            return
        previous = self.mlflow.search_runs(
            filter_string=f"tags.`{FINGERPRINT_TAG}` = '{self.fingerprint}'",
            order_by=["attributes.start_time DESC"], max_results=1, output_format="list"
        ) if resume else []
        if previous:
            self.mlflow.start_run(run_id=previous[0].info.run_id)
        else:
            self.mlflow.start_run(run_name=self.name, tags={FINGERPRINT_TAG: self.fingerprint})
        if params:
            self.mlflow.log_params({k: str(v)[:6000] for k, v in flatten(params).items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        numbers = {k: float(v) for k, v in flatten(metrics).items()
                   if isinstance(v, int | float) and not isinstance(v, bool)}
        if self.mlflow is not None:
            self.mlflow.log_metrics(numbers, step=step)
        if self.writer is not None:
            for key, value in numbers.items():
                self.writer.add_scalar(key, value, step or 0)

    def log_artifacts(self, paths: list[Path], folder: str) -> None:
        if self.mlflow is not None:
            for path in paths:
                self.mlflow.log_artifact(str(path), artifact_path=folder)

    def close(self) -> None:
        if self.mlflow is not None and self.mlflow.active_run() is not None:
            self.mlflow.end_run()
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
