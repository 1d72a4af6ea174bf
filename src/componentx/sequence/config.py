"""What a training run is given (``params.train``) and the budget fitted to the data."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from componentx.errors import UserError

SMALL_VALIDATION = 500  # windows; below, no early stopping (monitor auto)
SMALL_SMOOTHING = 3  # epochs an explicit monitor is averaged over below SMALL_VALIDATION
PATIENCE_SHARE = 0.2  # patience is at least this share of the epochs


@dataclass(frozen=True)
class TrainConfig:
    """``params.train``, key for key (``params.yaml`` holds the defaults and their meaning),
    and the device (``compute.device``)."""

    lr: float
    epochs: int
    batch_size: int
    eval_batch_size: int
    seed: int
    num_threads: int
    weight_decay: float
    class_weights: str | list[float]
    balanced_sampler: bool
    scheduler: str
    warmup_epochs: int
    step_size: int
    gamma: float
    grad_clip: float
    patience: int
    min_steps: int
    monitor: str
    smoothing: int | str
    resume: bool
    loss: str
    focal_gamma: float
    label_smoothing: float
    compile: bool
    nproc: int
    init: str
    freeze_epochs: int
    augment: list[str]
    device: str = "auto"


def fit_budget(config: TrainConfig, n_train: int, n_validation: int) -> TrainConfig:
    """The training budget for this data, from ``config``:

    - batch size at most a quarter of the training windows (at least 8), so an epoch has
      several optimizer steps;
    - epochs raised until the run makes at least ``min_steps`` optimizer steps;
    - patience at least ``PATIENCE_SHARE`` of those epochs;
    - ``monitor: auto`` watches the expected cost with ``SMALL_VALIDATION`` or more validation
      windows; with fewer, ``none``: no early stopping, the whole budget is trained and the
      last epoch kept, because a few validation vehicles would stop training on noise (their
      loss rises as soon as the model grows confident, long before it stops improving);
      ``smoothing: auto`` averages an explicitly chosen monitor over ``SMALL_SMOOTHING``
      epochs on such small validation sets, else over 1.

    On the default Component X data (12,000 windows, 5,046 validation vehicles) nothing
    changes: batch 128, 15 epochs (1,425 steps), patience 5, expected cost, no smoothing.
    """
    if n_train == 0:
        raise UserError("no training windows: check the train labels and window.size")
    batch = max(1, min(config.batch_size, max(8, n_train // 4)))
    steps_per_epoch = math.ceil(max(n_train, 1) / batch)
    epochs = max(config.epochs, math.ceil(config.min_steps / steps_per_epoch))
    small = n_validation < SMALL_VALIDATION
    monitor = ("none" if small else "expected_cost") if config.monitor == "auto" \
        else config.monitor
    smoothing = (SMALL_SMOOTHING if small and monitor != "none" else 1) \
        if config.smoothing == "auto" else int(config.smoothing)
    return replace(config, batch_size=batch, epochs=epochs, monitor=monitor,
                   smoothing=smoothing,
                   patience=max(config.patience, math.ceil(PATIENCE_SHARE * epochs)))
