"""The training loop, with checkpoints that let an interrupted run resume exactly."""

from __future__ import annotations

import io
import logging
import math
import os
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from componentx.augmentation import augment, check
from componentx.dataset import WindowSet, prefetched_batches
from componentx.decisions import class_priors, expected_cost_decision, shift_priors
from componentx.errors import StageError
from componentx.metrics import decision_metrics
from componentx.models import ModelConfig, build_model
from componentx.runtime import atomic_write_bytes

log = logging.getLogger(__name__)

SCHEDULERS = ("none", "step", "cosine", "plateau")
LOSSES = ("cross_entropy", "focal")
MONITORS = {"loss": "min", "accuracy": "max", "macro_f1": "max", "cost": "min",
            "expected_cost": "min", "none": "min"}
SMALL_VALIDATION = 500  # windows; below, no early stopping (monitor auto)
SMALL_SMOOTHING = 3  # epochs an explicit monitor is averaged over below SMALL_VALIDATION
PATIENCE_SHARE = 0.2  # patience is at least this share of the epochs


class CheckpointError(StageError):
    """A checkpoint that cannot be used, with what to do about it."""


class TrainingDiverged(StageError):
    """The loss or the gradients stopped being finite."""


@dataclass
class TrainConfig:
    lr: float = 1e-3
    epochs: int = 20
    batch_size: int = 256
    eval_batch_size: int = 2048
    seed: int = 0
    device: str = "auto"
    num_threads: int = 0
    weight_decay: float = 1e-4
    class_weights: str | list[float] = "inverse"
    balanced_sampler: bool = False
    scheduler: str = "cosine"
    warmup_epochs: int = 1
    step_size: int = 10
    gamma: float = 0.5
    grad_clip: float = 1.0
    patience: int = 5
    monitor: str = "auto"
    smoothing: int | str = "auto"
    min_steps: int = 1000
    resume: bool = True
    loss: str = "cross_entropy"
    focal_gamma: float = 2.0
    label_smoothing: float = 0.0
    compile: bool = False
    nproc: int = 1
    init: str = "scratch"
    freeze_epochs: int = 0
    augment: list[str] = field(default_factory=list)


@dataclass
class TrainState:
    """What survives between epochs besides the weights and the optimiser."""

    epoch: int = 0  # completed epochs
    best_metric: float | None = None
    best_epoch: int = -1
    bad_epochs: int = 0
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def choose_device(name: str, rank: int = 0) -> torch.device:
    """The device, chosen once; under several processes each rank takes its own GPU."""
    if name == "auto":
        return torch.device(f"cuda:{rank % torch.cuda.device_count()}"
                            if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"train.device={name!r} but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (global state that libraries may use)
    torch.manual_seed(seed)


def class_weight_tensor(setting: str | list[float], labels: np.ndarray, num_classes: int
                        ) -> torch.Tensor | None:
    """Cross-entropy weights: none, inverse frequency (mean 1), or an explicit list."""
    if setting == "none":
        return None
    if setting == "inverse":
        counts = np.bincount(labels, minlength=num_classes).astype(float)
        weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / num_classes, 0.0)
        return torch.tensor(weights / weights[counts > 0].mean(), dtype=torch.float32)
    if isinstance(setting, list | tuple) and len(setting) == num_classes:
        return torch.tensor([float(w) for w in setting], dtype=torch.float32)
    raise ValueError(f"train.class_weights must be 'none', 'inverse' or a list of {num_classes}"
                     f" numbers, got {setting!r}")


def effective_priors(labels: np.ndarray, weights: torch.Tensor | None, balanced: bool,
                     num_classes: int) -> np.ndarray:
    """Class priors the model is trained under: frequencies, re-weighted by the loss weights
    and the sampler. Probabilities are moved from these to the deployment priors later."""
    counts = np.bincount(labels, minlength=num_classes) + 0.5
    if balanced:
        counts = np.ones(num_classes)
    if weights is not None:
        counts = counts * np.maximum(weights.numpy().astype(float), 1e-6)
    return counts / counts.sum()


def epoch_order(labels: np.ndarray, seed: int, epoch: int, balanced: bool) -> np.ndarray:
    """Window order of one epoch: a seeded permutation, or a class-balanced draw."""
    rng = np.random.default_rng([seed, epoch])
    if not balanced:
        return rng.permutation(len(labels))
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())


def fit_budget(config: TrainConfig, n_train: int, n_validation: int) -> TrainConfig:
    """The training budget for this data, from ``config`` (``params.train``):

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
        raise StageError("no training windows: check the train labels and window.size")
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


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    if config.scheduler == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    if config.scheduler == "cosine":
        warmup, total = config.warmup_epochs, max(config.epochs, 1)

        def factor(epoch: int) -> float:
            if epoch < warmup:
                return (epoch + 1) / (warmup + 1)
            progress = (epoch - warmup) / max(total - warmup, 1)
            return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    if config.scheduler == "plateau":
        mode = MONITORS.get(config.monitor, "min")
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode,
                                                          factor=config.gamma, patience=2)
    raise ValueError(f"train.scheduler must be one of {SCHEDULERS}, got {config.scheduler!r}")


def _rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(),  # noqa: NPY002
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a kill during the save leaves the old file intact."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path, required: tuple[str, ...] = ("config", "model", "state")
                    ) -> dict[str, Any]:
    """Read a checkpoint, turning a damaged or foreign file into a clear error."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for damaged files
        raise CheckpointError(
            f"{path} cannot be read ({type(error).__name__}: {error}); delete it to start "
            "training from scratch") from None
    missing = set(required) - set(payload) if isinstance(payload, dict) else set(required)
    if missing:
        raise CheckpointError(f"{path} is not a componentx checkpoint (missing {sorted(missing)});"
                              " delete it to start training from scratch")
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


def load_model(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    checkpoint = load_checkpoint(Path(path))
    model = build_model(ModelConfig(**checkpoint["config"]))
    try:
        model.load_state_dict(checkpoint["model"])
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not match its model config: {error}") from None
    return model.to(device).eval(), checkpoint


def set_cpu_threads(requested: int, world: int = 1) -> int:
    """Intra-op threads for the CPU, chosen once: ``requested``, or the cores shared out
    among the processes of a distributed run."""
    threads = requested or max((os.cpu_count() or 1) // world, 1)
    torch.set_num_threads(threads)
    return threads


@torch.no_grad()
def predict_logits(model: nn.Module, windows: WindowSet, device: torch.device,
                   batch_size: int = 2048) -> np.ndarray:
    model.eval()
    outputs = []
    chunks = (np.arange(start, min(start + batch_size, len(windows)))
              for start in range(0, len(windows), batch_size))
    for batch in prefetched_batches(windows, chunks, pin=device.type == "cuda"):
        batch = batch.to(device)
        outputs.append(model(batch.x, batch.lengths, batch.specs).float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, 0), dtype=np.float32)


def validation_metrics(logits: np.ndarray, y: np.ndarray, cost_matrix: np.ndarray,
                       train_priors: np.ndarray, weights: torch.Tensor | None) -> dict[str, float]:
    """Per-epoch validation summary: loss, argmax scores, and the expected-cost decision's cost."""
    logits_t = torch.as_tensor(logits)
    loss = nn.functional.cross_entropy(logits_t, torch.as_tensor(y), weight=weights).item()
    probs = torch.softmax(logits_t, dim=1).numpy().astype(np.float64)
    argmax = decision_metrics(y, probs.argmax(axis=1), cost_matrix)
    shifted = shift_priors(probs, train_priors, class_priors(y, len(cost_matrix)))
    expected = decision_metrics(y, expected_cost_decision(shifted, cost_matrix), cost_matrix)
    return {"loss": loss, "accuracy": argmax["accuracy"], "macro_f1": argmax["macro_f1"],
            "cost": argmax["cost_per_vehicle"], "expected_cost": expected["cost_per_vehicle"]}


def _improved(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value < best if mode == "min" else value > best)


EpochCallback = Callable[[int, dict[str, float], dict[str, float], float], None]


class ClassificationLoss(nn.Module):
    """Weighted cross-entropy, or focal loss (``gamma`` > 0), with optional label smoothing.

    :meth:`terms` returns the weighted sum over a batch and its normaliser (the sum of the
    weights of the batch's labels), so shards of one batch on several processes add up to
    exactly the loss of the whole batch.
    """

    def __init__(self, weight: torch.Tensor | None, gamma: float = 0.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight if weight is not None else torch.ones(0))
        self.gamma, self.label_smoothing = gamma, label_smoothing

    def sample_weights(self, y: torch.Tensor) -> torch.Tensor:
        return self.weight[y] if len(self.weight) else torch.ones_like(y, dtype=torch.float32)

    def terms(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        losses = nn.functional.cross_entropy(logits, y, reduction="none",
                                             label_smoothing=self.label_smoothing)
        if self.gamma > 0:
            p_true = torch.softmax(logits, dim=1).gather(1, y[:, None]).squeeze(1)
            losses = (1 - p_true).clamp(min=0) ** self.gamma * losses
        return (losses * self.sample_weights(y)).sum()

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.terms(logits, y) / self.sample_weights(y).sum().clamp(min=1e-12)


def make_loss(config: TrainConfig, weights: torch.Tensor | None) -> ClassificationLoss:
    if config.loss not in LOSSES:
        raise ValueError(f"train.loss must be one of {LOSSES}, got {config.loss!r}")
    gamma = config.focal_gamma if config.loss == "focal" else 0.0
    return ClassificationLoss(weights, gamma, config.label_smoothing)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def set_encoder_frozen(model: nn.Module, frozen: bool) -> None:
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(not frozen)


def train(model_config: ModelConfig, config: TrainConfig, train_set: WindowSet,
          val_set: WindowSet, cost_matrix: np.ndarray, models_dir: Path, fingerprint: str,
          resume_from: dict[str, Any] | None = None,
          on_epoch_end: EpochCallback | None = None,
          encoder_state: dict[str, torch.Tensor] | None = None) -> TrainState:
    """Train with early stopping; ``models_dir`` receives best.pt and last.pt every epoch.

    ``resume_from`` is a checkpoint from :func:`resumable_checkpoint`: training continues
    after its last completed epoch with its weights, optimiser, scheduler and RNG states.
    ``encoder_state`` starts the encoder from pre-trained weights; it stays frozen for
    ``config.freeze_epochs`` epochs. Under torch.distributed every process trains on its
    share of each batch (gradients are averaged, so the result equals one process) and only
    rank 0 writes checkpoints and calls ``on_epoch_end``.
    """
    if config.monitor not in (*MONITORS, "auto"):
        raise ValueError(f"train.monitor must be auto or one of {sorted(MONITORS)}, got "
                         f"{config.monitor!r}")
    check(config.augment)
    config = fit_budget(config, len(train_set), len(val_set))
    log.info("budget for %d train / %d validation windows: batch %d, %d epochs (%d optimizer "
             "steps), patience %d, early stopping on validation %s%s", len(train_set),
             len(val_set), config.batch_size, config.epochs,
             config.epochs * math.ceil(len(train_set) / config.batch_size), config.patience,
             config.monitor if config.monitor != "none" else "none (the last epoch is kept)",
             f" averaged over {config.smoothing} epochs" if config.smoothing > 1 else "")
    rank, world = distributed_context()
    device = choose_device(config.device, rank)
    if device.type == "cpu":
        threads = set_cpu_threads(config.num_threads, world)
        log.info("device cpu: %d intra-op threads, %d inter-op, 1 batch-prefetch thread",
                 threads, torch.get_num_interop_threads())
    else:
        log.info("device %s (%s), 1 batch-prefetch thread", device, "bf16 autocast"
                 if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp16 autocast")
    seed_everything(config.seed)
    model = build_model(model_config).to(device)
    if encoder_state is not None:
        model.encoder.load_state_dict(encoder_state)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = make_scheduler(config, optimizer)
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
        if device.type == "cuda" else None
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    train_labels = train_set.labels.numpy()
    num_classes = model_config.num_classes
    weights = class_weight_tensor(config.class_weights, train_labels, num_classes)
    loss_fn = make_loss(config, weights).to(device)
    train_priors = effective_priors(train_labels, weights, config.balanced_sampler, num_classes)
    val_y = val_set.labels.numpy()
    mode = MONITORS[config.monitor]
    majority = int(np.bincount(train_labels).argmax())

    state = TrainState()
    last_path, best_path = models_dir / "last.pt", models_dir / "best.pt"
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        scaler.load_state_dict(resume_from["scaler"])
        _set_rng_state(resume_from["rng"])
        state = TrainState(**resume_from["state"])
        log.info("resuming from %s after epoch %d", last_path, state.epoch)
    elif rank == 0:
        best_path.unlink(missing_ok=True)
    step_model: nn.Module = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.init == "pretrained" and config.freeze_epochs > 0)
    if config.compile and device.type == "cuda":
        step_model = torch.compile(step_model)

    def payload() -> dict[str, Any]:
        return {"config": model_config.to_dict(), "train_config": asdict(config),
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "rng": _rng_state(), "state": asdict(state), "fingerprint": fingerprint,
                "train_priors": train_priors.tolist()}

    show_bar = sys.stderr.isatty() and rank == 0
    while state.epoch < config.epochs and not state.finished:
        epoch = state.epoch
        set_encoder_frozen(model, config.init == "pretrained" and epoch < config.freeze_epochs)
        model.train()
        order = epoch_order(train_labels, config.seed, epoch, config.balanced_sampler)
        batches = [order[start:start + config.batch_size]
                   for start in range(0, len(order) - world + 1, config.batch_size)]
        shards = prefetched_batches(train_set, (index[rank::world] for index in batches),
                                    pin=device.type == "cuda")
        total_loss, seen, predictions, truth = 0.0, 0, [], []
        for step, (index, batch) in enumerate(tqdm(
                zip(batches, shards, strict=True), total=len(batches), unit="batch",
                desc=f"epoch {epoch + 1}/{config.epochs}", disable=not show_bar, leave=False)):
            normaliser = loss_fn.sample_weights(torch.from_numpy(
                train_labels[index]).to(device)).sum().clamp(min=1e-12)
            shard = index[rank::world]
            if config.augment:
                seed = np.random.SeedSequence([config.seed, epoch, step, rank]).generate_state(1)
                batch = augment(batch, config.augment, batch.y != majority,
                                torch.Generator().manual_seed(int(seed[0])))
            batch = batch.to(device)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                logits = step_model(batch.x, batch.lengths, batch.specs)
                loss = loss_fn.terms(logits.float(), batch.y) / normaliser * world
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss is {loss.item()} at epoch {epoch + 1}, step "
                                       f"{step + 1}; no checkpoint was written for this epoch "
                                       "(lower train.lr or check the inputs)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip or float("inf"))
            if not torch.isfinite(norm) and amp_dtype != torch.float16:
                raise TrainingDiverged(f"gradient norm is {norm.item()} at epoch {epoch + 1}, "
                                       f"step {step + 1}; no checkpoint was written")
            scaler.step(optimizer)
            scaler.update()
            total_loss += loss.item() / world * len(index)
            seen += len(index)
            predictions.append(logits.detach().argmax(dim=1).cpu().numpy())
            truth.append(train_labels[shard])
        train_scores = decision_metrics(np.concatenate(truth), np.concatenate(predictions),
                                        cost_matrix)
        train_metrics = {"loss": total_loss / max(seen, 1), "accuracy": train_scores["accuracy"],
                         "macro_f1": train_scores["macro_f1"],
                         "cost": train_scores["cost_per_vehicle"]}
        val_logits = predict_logits(model, val_set, device, config.eval_batch_size)
        val_metrics = validation_metrics(val_logits, val_y, cost_matrix, train_priors,
                                         weights)
        lr = optimizer.param_groups[0]["lr"]
        if config.monitor == "none":  # the latest epoch is always the best
            monitored = -float(epoch)
        else:
            recent = [h["validation"][config.monitor]
                      for h in state.history[-(config.smoothing - 1):]
                      ] if config.smoothing > 1 else []
            monitored = float(np.mean([*recent, val_metrics[config.monitor]]))
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(monitored)
        else:
            scheduler.step()
        state.epoch = epoch + 1
        if _improved(monitored, state.best_metric, mode):
            state.best_metric, state.best_epoch, state.bad_epochs = monitored, epoch + 1, 0
        else:
            state.bad_epochs += 1
        state.finished = state.bad_epochs >= config.patience or state.epoch >= config.epochs
        state.history.append({"epoch": epoch + 1, "lr": lr, "train": train_metrics,
                              "validation": val_metrics})
        if rank == 0:
            checkpoint = payload()
            if state.best_epoch == epoch + 1:
                save_checkpoint(best_path, checkpoint)
            save_checkpoint(last_path, checkpoint)
            log.info("epoch %d/%d  train loss %.4f  val loss %.4f  macro-F1 %.3f  cost %.2f  "
                     "expected cost %.2f  lr %.2g%s", epoch + 1, config.epochs,
                     train_metrics["loss"], val_metrics["loss"], val_metrics["macro_f1"],
                     val_metrics["cost"], val_metrics["expected_cost"], lr,
                     "  *best*" if state.best_epoch == epoch + 1 else "")
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, train_metrics, val_metrics, lr)
    if state.bad_epochs >= config.patience and rank == 0:
        log.info("early stop: no %s improvement for %d epochs (best %.4f at epoch %d)",
                 config.monitor, config.patience, state.best_metric, state.best_epoch)
    return state
