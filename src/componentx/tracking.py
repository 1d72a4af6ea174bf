"""Experiment tracking: dvclive always, and where teams already look, MLflow and TensorBoard.

MLflow and TensorBoard are off by default (``params.yaml`` section ``tracking``). The train
stage opens an MLflow run named ``{data_version}-w{window}-{arch}-{run}`` and logs the params,
every epoch's metrics and the best checkpoint; the evaluate stage finds that run again by the
train fingerprint it is tagged with and adds the final metrics and the evaluation plots.
MLflow's store is a local SQLite file by default (``sqlite:///mlflow.db``, what ``mlflow ui``
opens), a folder (MLflow's file store, kept only in maintenance by MLflow) or a server.
TensorBoard gets the same scalars as event files under ``tracking.tensorboard_dir/<run name>``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from componentx.errors import UserError

FINGERPRINT_TAG = "componentx.train_fingerprint"
FINAL_METRICS = ("cost_total", "cost_always_0", "macro_f1", "accuracy", "brier", "ece",
                 "classwise_ece", "log_loss", "pr_auc", "roc_auc")


class TrackingError(UserError):
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


def run_name(data_digest: str, window: int, arch: str, fingerprint: str) -> str:
    """``{data_version}-w{window}-{arch}-{run}``: short hashes of the ingested readouts (their
    digest in ``schema.json``) and of the run."""
    return f"{data_digest[:8]}-w{window}-{arch}-{fingerprint[:6]}"


class Tracker:
    """Logs to MLflow and/or TensorBoard as ``settings`` (``params.tracking``) asks."""

    def __init__(self, settings: dict, name: str, fingerprint: str) -> None:
        self.settings, self.name, self.fingerprint = settings, name, fingerprint
        self.mlflow = self.writer = None
        if settings["mlflow"]:
            self.mlflow = _require("mlflow", "tracking.mlflow", "mlflow")
            uri = settings["mlflow_uri"]
            if ":" not in uri:  # a folder: MLflow's file store, which it only keeps maintained
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


class EpochLog:
    """Per-epoch metrics of a training run to dvclive (``dvc plots``, ``dvc exp show``) and the
    trackers; on processes other than rank 0 it does nothing.

    ``resume`` continues the dvclive folder and the MLflow run of an interrupted run; else
    the dvclive folder starts empty.
    """

    def __init__(self, live_dir: Path, settings: dict, name: str, fingerprint: str,
                 resume: bool, main_process: bool) -> None:
        self.live = self.tracker = None
        if not main_process:
            return
        from dvclive import Live

        if not resume and Path(live_dir).exists():
            shutil.rmtree(live_dir)
        self.live = Live(dir=str(live_dir), resume=resume, dvcyaml=None, save_dvc_exp=False)
        self.tracker = Tracker(settings, name, fingerprint)
        self.resume = resume

    def start(self, params: dict, logged: dict) -> None:
        """Log ``logged`` (the params a run depends on) to dvclive and ``params`` to MLflow."""
        if self.live is not None:
            self.live.log_params(logged)
            self.tracker.start(params, resume=self.resume)

    def on_epoch_end(self, epoch: int, train: dict, validation: dict, lr: float) -> None:
        if self.live is None:
            return
        self.live.step = epoch - 1
        for split, metrics in (("train", train), ("validation", validation)):
            for metric, value in metrics.items():
                self.live.log_metric(f"{split}/{metric}", value)
        self.live.log_metric("lr", lr)
        self.live.next_step()
        self.tracker.log_metrics({"train": train, "validation": validation, "lr": lr},
                                 step=epoch)

    def log_artifacts(self, paths: list[Path], folder: str) -> None:
        if self.tracker is not None:
            self.tracker.log_artifacts(paths, folder)

    def __enter__(self) -> EpochLog:
        if self.live is not None:
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.tracker.close()
            self.live.__exit__(*exc)


def log_evaluation(settings: dict, name: str, fingerprint: str, report: dict,
                   artifacts: list[Path]) -> None:
    """Add the final validation and test metrics of ``report`` and the ``artifacts`` to the
    training run's MLflow run (found by its fingerprint) and TensorBoard folder."""
    with Tracker(settings, name, fingerprint) as tracker:
        tracker.start(resume=True)
        tracker.log_metrics({split: {k: v for k, v in report[split].items()
                                     if k in FINAL_METRICS} for split in ("validation", "test")})
        tracker.log_artifacts(artifacts, "evaluation")
