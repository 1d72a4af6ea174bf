"""The training loop, with checkpoints that let an interrupted run resume exactly.

:func:`train` reads top to bottom: fit the budget to the data, set up the run (device, model,
optimizer, schedule, loss) or resume it from ``last.pt``, then per epoch one pass over the
training windows (:func:`train_epoch`), one over validation (:func:`validation_metrics`),
the schedule, :class:`EarlyStopping`, and the checkpoints. Under torch.distributed every
process trains on its share of each batch (gradients are averaged, so N processes train
exactly like one) and only rank 0 writes files and reports epochs.
"""

from __future__ import annotations

import logging
import math
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from componentx.data.window_set import WindowSet
from componentx.decisions.metrics import confusion_metrics, decision_metrics
from componentx.decisions.priors import class_priors, class_weights, shift_priors, training_priors
from componentx.decisions.rules import expected_cost_decision
from componentx.errors import UserError
from componentx.sequence.augmentation import augment
from componentx.sequence.checkpoints import rng_state, save_checkpoint, set_rng_state
from componentx.sequence.config import TrainConfig, fit_budget
from componentx.sequence.dataset import prefetched_batches
from componentx.sequence.inference import choose_device, predict_logits, set_cpu_threads
from componentx.sequence.models import ModelConfig, build_model

log = logging.getLogger(__name__)

MONITOR_MODES = {"loss": "min", "accuracy": "max", "macro_f1": "max", "cost": "min",
                 "expected_cost": "min", "none": "min"}  # one per params.MONITORS
EpochCallback = Callable[[int, dict[str, float], dict[str, float], float], None]


class TrainingDiverged(UserError):
    """The loss or the gradients stopped being finite."""


@dataclass
class EarlyStopping:
    """Keeps the epoch with the best validation ``monitor`` (averaged over the last
    ``smoothing`` epochs) and stops after ``patience`` epochs without improvement. With
    ``monitor`` "none" every epoch is the best so far: the last one is kept, and training
    never stops early."""

    monitor: str
    patience: int
    smoothing: int = 1
    values: list[float] = field(default_factory=list)  # the monitored metric, per epoch
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0

    @property
    def should_stop(self) -> bool:
        return self.bad_epochs >= self.patience

    @property
    def smoothed(self) -> float | None:
        """The latest smoothed value of the monitored metric (None with "none")."""
        return float(np.mean(self.values[-self.smoothing:])) if self.values else None

    def update(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Record an epoch's validation ``metrics``; True when the epoch is the new best."""
        if self.monitor == "none":
            self.best_epoch, self.bad_epochs = epoch, 0
            return True
        self.values.append(metrics[self.monitor])
        value = self.smoothed
        lower = MONITOR_MODES[self.monitor] == "min"
        if self.best is None or (value < self.best if lower else value > self.best):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True
        self.bad_epochs += 1
        return False


@dataclass
class TrainState:
    """What survives between epochs besides the weights and the optimiser."""

    stopping: EarlyStopping
    epoch: int = 0  # completed epochs
    finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainState:
        return cls(**{**state, "stopping": EarlyStopping(**state["stopping"])})


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (global state that libraries may use)
    torch.manual_seed(seed)


def distributed_context() -> tuple[int, int]:
    """(rank, world size); (0, 1) without torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def epoch_order(labels: np.ndarray, seed: int, epoch: int, balanced: bool) -> np.ndarray:
    """Window order of one epoch: a seeded permutation, or a class-balanced draw."""
    rng = np.random.default_rng([seed, epoch])
    if not balanced:
        return rng.permutation(len(labels))
    counts = np.bincount(labels)
    weights = 1.0 / counts[labels]
    return rng.choice(len(labels), size=len(labels), replace=True, p=weights / weights.sum())


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """The learning-rate schedule of ``train.scheduler``, stepped once per epoch."""
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, config.step_size, config.gamma)
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=MONITOR_MODES[config.monitor], factor=config.gamma, patience=2)
    warmup, total = config.warmup_epochs, max(config.epochs, 1)

    def cosine(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        progress = (epoch - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine if config.scheduler == "cosine" else (lambda epoch: 1.0))


class ClassificationLoss(nn.Module):
    """Weighted cross-entropy, or focal loss (``gamma`` > 0), with optional label smoothing.

    :meth:`terms` returns the weighted sum over a batch; the loss is that sum over the sum
    of the weights of the batch's labels, so shards of one batch on several processes add up
    to exactly the loss of the whole batch.
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
    gamma = config.focal_gamma if config.loss == "focal" else 0.0
    return ClassificationLoss(weights, gamma, config.label_smoothing)


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


@dataclass
class Run:
    """Everything a training run updates, set up once (:func:`setup_run`)."""

    config: TrainConfig
    model_config: ModelConfig
    device: torch.device
    model: nn.Module
    step_model: nn.Module  # the model as stepped: DistributedDataParallel, compiled
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None
    loss: ClassificationLoss
    weights: torch.Tensor | None
    train_priors: np.ndarray
    rank: int
    world: int

    def rng_states(self) -> list[dict[str, Any]]:
        """Every process's random states, in rank order (call it in every process)."""
        states: list[Any] = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(states, rng_state())
        else:
            states[0] = rng_state()
        return states

    def state_dict(self, state: TrainState, fingerprint: str, rng: list[dict[str, Any]]
                   ) -> dict[str, Any]:
        """A checkpoint: data only (see :mod:`componentx.sequence.checkpoints`), with the
        random states ``rng`` of every process."""
        return {"config": self.model_config.to_dict(), "train_config": asdict(self.config),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": rng, "state": asdict(state), "fingerprint": fingerprint,
                "train_priors": self.train_priors.tolist()}

    def load_state_dict(self, checkpoint: dict[str, Any]) -> TrainState:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        rng = checkpoint["rng"]
        if len(rng) != self.world:
            raise UserError(f"the checkpoint was written by {len(rng)} processes, this run has "
                            f"{self.world} (train.nproc): delete models/last.pt to start again")
        set_rng_state(rng[self.rank])
        return TrainState.from_dict(checkpoint["state"])


def setup_run(model_config: ModelConfig, config: TrainConfig, train_labels: np.ndarray,
              encoder_state: dict[str, torch.Tensor] | None) -> Run:
    """Device, threads, seeded model (from ``encoder_state`` where given), optimizer,
    schedule, mixed precision on CUDA (bf16 where supported, else fp16 with a scaler), the
    class-weighted loss and the priors the model is trained under."""
    rank, world = distributed_context()
    device = choose_device(config.device, rank)
    if device.type == "cpu":
        threads = set_cpu_threads(config.num_threads, world)
        log.info("device cpu: %d intra-op threads, %d inter-op, 1 batch-prefetch thread",
                 threads, torch.get_num_interop_threads())
    amp_dtype = ((torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
                 if device.type == "cuda" else None)
    if amp_dtype is not None:
        log.info("device %s (%s autocast), 1 batch-prefetch thread", device, amp_dtype)
    seed_everything(config.seed)
    model = build_model(model_config).to(device)
    if encoder_state is not None:
        model.encoder.load_state_dict(encoder_state)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    weights = class_weights(config.class_weights, train_labels, model_config.num_classes)
    weights = None if weights is None else torch.from_numpy(weights)
    step_model: nn.Module = model
    if world > 1:
        step_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=config.init == "pretrained" and config.freeze_epochs > 0)
    if config.compile and device.type == "cuda":
        step_model = torch.compile(step_model)
    return Run(config, model_config, device, model, step_model, optimizer,
               make_scheduler(config, optimizer),
               torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16), amp_dtype,
               make_loss(config, weights).to(device), weights,
               training_priors(train_labels, weights, config.balanced_sampler,
                               model_config.num_classes), rank, world)


def train_step(run: Run, batch: Any, normaliser: torch.Tensor, where: str
               ) -> tuple[torch.Tensor, float]:
    """One optimizer step on this process's shard of a batch; returns the shard's logits and
    its share of the batch's loss (the shares of all processes add up to the batch loss)."""
    with torch.autocast(run.device.type, dtype=run.amp_dtype, enabled=run.amp_dtype is not None):
        logits = run.step_model(batch.x, batch.lengths, batch.specs)
        loss = run.loss.terms(logits.float(), batch.y) / normaliser * run.world
    if not torch.isfinite(loss):
        raise TrainingDiverged(f"loss is {loss.item()} at {where}; no checkpoint was written "
                               "for this epoch (lower train.lr or check the inputs)")
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.unscale_(run.optimizer)
    norm = nn.utils.clip_grad_norm_(run.model.parameters(), run.config.grad_clip or float("inf"))
    if not torch.isfinite(norm) and run.amp_dtype != torch.float16:
        raise TrainingDiverged(f"gradient norm is {norm.item()} at {where}; no checkpoint was "
                               "written")
    run.scaler.step(run.optimizer)
    run.scaler.update()
    return logits.detach(), loss.item() / run.world


def train_epoch(run: Run, train_set: WindowSet, epoch: int, cost_matrix: np.ndarray
                ) -> dict[str, float]:
    """One pass over the training windows in the epoch's order; returns the training loss
    (each batch's weighted loss, averaged over windows) and argmax scores, over all
    processes."""
    config, rank, world = run.config, run.rank, run.world
    labels = train_set.labels
    majority = int(np.bincount(labels).argmax())
    frozen = config.init == "pretrained" and epoch < config.freeze_epochs
    for parameter in run.model.encoder.parameters():
        parameter.requires_grad_(not frozen)
    run.model.train()
    order = epoch_order(labels, config.seed, epoch, config.balanced_sampler)
    batches = [order[start:start + config.batch_size]
               for start in range(0, len(order) - world + 1, config.batch_size)]
    shards = prefetched_batches(train_set, (index[rank::world] for index in batches),
                                pin=run.device.type == "cuda")
    k = run.model_config.num_classes
    loss_sum, confusion = 0.0, torch.zeros(k * k, dtype=torch.float64, device=run.device)
    steps = tqdm(zip(batches, shards, strict=True), total=len(batches), unit="batch",
                 desc=f"epoch {epoch + 1}/{config.epochs}", leave=False,
                 disable=not (sys.stderr.isatty() and rank == 0))
    for step, (index, batch) in enumerate(steps):
        normaliser = run.loss.sample_weights(torch.from_numpy(labels[index]).to(
            run.device)).sum().clamp(min=1e-12)
        if config.augment:
            seed = np.random.SeedSequence([config.seed, epoch, step, rank]).generate_state(1)
            batch = augment(batch, config.augment, batch.y != majority,
                            torch.Generator().manual_seed(int(seed[0])))
        batch = batch.to(run.device)
        logits, loss_share = train_step(run, batch, normaliser,
                                        f"epoch {epoch + 1}, step {step + 1}")
        loss_sum += loss_share * len(index)
        confusion += torch.bincount(batch.y * k + logits.argmax(dim=1), minlength=k * k)
    totals = torch.cat([torch.tensor([loss_sum], dtype=torch.float64, device=run.device),
                        confusion])
    if world > 1:  # every process saw its shards: the epoch's figures are their sums
        dist.all_reduce(totals)
    totals = totals.cpu().numpy()
    scores = confusion_metrics(totals[1:].reshape(k, k).round().astype(np.int64), cost_matrix)
    return {"loss": float(totals[0] / max(sum(len(b) for b in batches), 1)),
            "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"],
            "cost": scores["cost_per_vehicle"]}


def validation_logits(run: Run, windows: WindowSet) -> np.ndarray:
    """Logits (windows, classes) of the validation windows: each process scores its
    contiguous share, and every process gets all the shares (the same numbers as one
    process: a window's logits do not depend on the windows batched with it)."""
    share = -(-len(windows) // run.world)
    rows = range(min(run.rank * share, len(windows)), min((run.rank + 1) * share, len(windows)))
    logits = predict_logits(run.model, windows, run.device, run.config.eval_batch_size, rows)
    if run.world == 1:
        return logits
    mine = torch.zeros((share, run.model_config.num_classes), device=run.device)
    if len(rows):
        mine[:len(rows)] = torch.from_numpy(logits)
    shares = [torch.empty_like(mine) for _ in range(run.world)]
    dist.all_gather(shares, mine)
    return torch.cat(shares)[:len(windows)].cpu().numpy()


def train(model_config: ModelConfig, config: TrainConfig, train_set: WindowSet,
          val_set: WindowSet | None, cost_matrix: np.ndarray, models_dir: Path,
          fingerprint: str, resume_from: dict[str, Any] | None = None,
          on_epoch_end: EpochCallback | None = None,
          encoder_state: dict[str, torch.Tensor] | None = None) -> TrainState:
    """Train with early stopping; ``models_dir`` receives ``last.pt`` every epoch and
    ``best.pt`` at every new best epoch. Returns the final :class:`TrainState`. Without
    ``val_set`` (a refit on all labelled windows) there is no early stopping: the budget is
    trained and the last epoch kept.

    ``resume_from`` is a checkpoint from
    :func:`~componentx.sequence.checkpoints.resumable_checkpoint`: training continues after
    its last completed epoch with its weights, optimiser, scheduler and RNG states.
    ``encoder_state`` starts the encoder from pre-trained weights, frozen for
    ``config.freeze_epochs`` epochs. ``on_epoch_end(epoch, train, validation, lr)`` is called
    by rank 0 after each epoch's checkpoint.
    """
    n_validation = 0 if val_set is None else len(val_set)
    config = fit_budget(config, len(train_set), n_validation)
    if val_set is None and config.monitor != "none":
        raise UserError(f"train.monitor {config.monitor} needs validation windows")
    log.info("budget for %d train / %d validation windows: batch %d, %d epochs (%d optimizer "
             "steps), patience %d, early stopping on validation %s%s", len(train_set),
             n_validation, config.batch_size, config.epochs,
             config.epochs * math.ceil(len(train_set) / config.batch_size), config.patience,
             config.monitor if config.monitor != "none" else "none (the last epoch is kept)",
             f" averaged over {config.smoothing} epochs" if config.smoothing > 1 else "")
    run = setup_run(model_config, config, train_set.labels, encoder_state)
    state = TrainState(EarlyStopping(config.monitor, config.patience, config.smoothing))
    best_path, last_path = models_dir / "best.pt", models_dir / "last.pt"
    if resume_from is not None:
        state = run.load_state_dict(resume_from)
        log.info("resuming from %s after epoch %d", last_path, state.epoch)
    elif run.rank == 0:
        best_path.unlink(missing_ok=True)
    while state.epoch < config.epochs and not state.finished:
        epoch = state.epoch
        train_metrics = train_epoch(run, train_set, epoch, cost_matrix)
        val_metrics = {} if val_set is None else validation_metrics(
            validation_logits(run, val_set), val_set.labels, cost_matrix, run.train_priors,
            run.weights)
        lr = run.optimizer.param_groups[0]["lr"]
        improved = state.stopping.update(epoch + 1, val_metrics)
        if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            smoothed = state.stopping.smoothed
            run.scheduler.step((val_metrics or train_metrics)["loss"] if smoothed is None
                               else smoothed)
        else:
            run.scheduler.step()
        state.epoch = epoch + 1
        state.finished = state.stopping.should_stop or state.epoch >= config.epochs
        state.history.append({"epoch": epoch + 1, "lr": lr, "train": train_metrics,
                              "validation": val_metrics})
        rng = run.rng_states()
        if run.rank == 0:
            checkpoint = run.state_dict(state, fingerprint, rng)
            if improved:
                save_checkpoint(best_path, checkpoint)
            save_checkpoint(last_path, checkpoint)
            log.info("epoch %d/%d  train loss %.4f  %s  lr %.2g%s", epoch + 1, config.epochs,
                     train_metrics["loss"], "val loss {loss:.4f}  macro-F1 {macro_f1:.3f}  cost "
                     "{cost:.2f}  expected cost {expected_cost:.2f}".format(**val_metrics)
                     if val_metrics else "(no validation)", lr,
                     "  *best*" if improved and val_metrics else "")
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, train_metrics, val_metrics, lr)
    if state.stopping.should_stop and run.rank == 0:
        log.info("early stop: no %s improvement for %d epochs (best %.4f at epoch %d)",
                 config.monitor, config.patience, state.stopping.best,
                 state.stopping.best_epoch)
    return state
