"""LightningModule that trains one model with cross-entropy (teachers, scratch students)."""
from __future__ import annotations

import inspect
from typing import Any, Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from datamodules.sampling import hashed_seed
from models.checkpoints import MODEL_CONFIG_KEY
from tasks.finite import CHECK_EVERY_STEPS, FiniteWatch, stop_if_not_finite
from tasks.metrics import classification_metrics
from tasks.training_log import EpochMeans, logs_step_values


def seed_training_step(seed: int, step: int, rank: int = 0, device: torch.device | None = None) -> None:
    """Seeds torch's global generators for one training step: every random draw that uses them (dropout, e.g. in
    torchvision's classifiers, or a term's sampling) is then a function of (seed, step, process), so a
    resumed run replays the unkilled run's draws and DDP's processes draw apart. The CPU's generator and that of
    `device` (the one the step runs on) only: torch.manual_seed would also seed every other device type, each
    through a deferred call that records a stack trace where that device is not in use (~1,000 Python calls a
    step)."""
    step_seed = hashed_seed(seed, step, rank)
    torch.default_generator.manual_seed(step_seed)
    if device is not None and device.type != "cpu":
        torch.get_device_module(device).manual_seed(step_seed)  # the current device's: the process's own


def fused_where_possible(factory: Callable[..., torch.optim.Optimizer], parameters: list) -> torch.optim.Optimizer:
    """factory(parameters), with fused=True where the config leaves `fused` unset and torch has a fused kernel for
    the optimizer on the parameters' device (CUDA; the CPU too for SGD, Adam, AdamW and Adagrad): one kernel per
    step for every parameter instead of a Python loop over them (a CPU resnet8 SGD step: 0.15 ms, not 0.7 ms)."""
    try:
        accepts = "fused" in inspect.signature(getattr(factory, "func", factory)).parameters
    except (TypeError, ValueError):  # a callable without a signature
        accepts = False
    if not accepts or not parameters or (getattr(factory, "keywords", None) or {}).get("fused") is not None:
        return factory(parameters)
    try:
        return factory(parameters, fused=True)
    except RuntimeError:  # no fused kernel for this device or dtype, or a setting it excludes (foreach=true)
        return factory(parameters)


class ClassificationTask(pl.LightningModule):
    def __init__(self, model: nn.Module, num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, model_config: dict | None = None,
                 channels_last: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        self.seed = int(seed)
        self.channels_last = bool(channels_last)
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # Saved into every checkpoint so the checkpoint alone rebuilds the architecture.
        self.model_config = model_config
        self.val_metrics = classification_metrics(num_classes, "val/")
        self.test_metrics = classification_metrics(num_classes, "test/")
        self.finite_watch = FiniteWatch()
        # A torchmetric, not a logged tensor: under DDP, Lightning's mean of a logged tensor divides by an
        # integer mean of the processes' example counts (a truncated one when their shares differ).
        self.eval_loss = nn.ModuleDict({"val": MeanMetric(), "test": MeanMetric()})
        self.train_means = EpochMeans()
        self.marks_graph_steps = False  # compile=graphs: each training step starts a new round of CUDA graph replays

    # Attributes set at every step that hold plain values (Lightning sets _current_fx_name, a string, twice around
    # each of the ~25 hook calls of a step): nn.Module's parameter/module/buffer checks are skipped for them.
    PLAIN_STEP_ATTRIBUTES = frozenset({"_current_fx_name"})

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.PLAIN_STEP_ATTRIBUTES:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        if self.channels_last:  # NHWC: the layout tensor cores and oneDNN convolutions run fastest in
            self.model.to(memory_format=torch.channels_last)

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs in the models' memory format (NHWC under channels_last)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def on_train_batch_start(self, batch, batch_idx) -> None:
        seed_training_step(self.seed, self.global_step, self.global_rank, self.device)
        if self.marks_graph_steps:  # the graphs' outputs of the last step may be overwritten from here on
            torch.compiler.cudagraph_mark_step_begin()

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.model(self.memory_format(x))
        loss = F.cross_entropy(logits, y)
        self.watch_finite({"loss": loss}, batch_idx)
        self.log_training_step(batch, {"loss": loss}, logits, y)
        return loss

    def log_training_step(self, batch, values: dict[str, torch.Tensor], logits: torch.Tensor,
                          targets: torch.Tensor) -> None:
        """Logs this step's values (the loss, a distillation's terms) and top-1 on `targets`: added, on the
        device, to the epoch's means; Lightning logs them at logging steps and epoch ends (tasks/training_log.py)."""
        top1 = (logits.argmax(1) == targets).float().mean()
        self.train_means.add({**{f"train/{name}": value for name, value in values.items()}, "train/top1": top1},
                             weight=len(batch[1]))  # the loaded batch's size, as self.log weighs epoch means

    def watch_finite(self, values: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Note (on the device) whether this step's values are finite; see tasks/finite.py."""
        self.finite_watch.update(values, self.current_epoch, batch_idx, self.global_step)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % CHECK_EVERY_STEPS == 0 or batch_idx + 1 >= self.trainer.num_training_batches:
            stop_if_not_finite(self.finite_watch, self.trainer, self)
        if logs_step_values(self.trainer):  # the step values, as self.log(on_step=True, on_epoch=True) names them
            values = {f"{name}_step": value for name, value in self.train_means.last.items() if name != "train/top1"}
            self.log("train/loss_step", values.pop("train/loss_step"), prog_bar=True)
            self.log_dict(values)

    def on_train_epoch_end(self) -> None:
        for name, mean in self.train_means.pop().items():
            if name == "train/top1":  # logged per epoch only
                self.log(name, mean, batch_size=1)
            else:
                self.log(f"{name}_epoch", mean, prog_bar=name == "train/loss", batch_size=1)
                self.log(name, mean, logger=False, batch_size=1)  # callbacks monitoring it see the epoch's mean

    def _evaluate(self, batch, stage: str) -> torch.Tensor:
        x, y, _ = batch
        logits = self.model(self.memory_format(x))
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits, y)
        self.eval_loss[stage].update(F.cross_entropy(logits, y), weight=len(y))
        self.log(f"{stage}/loss", self.eval_loss[stage], on_epoch=True)
        self.log_dict(metrics, on_epoch=True, prog_bar=(stage == "val"))
        return logits

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def trainable_parameters(self):
        return self.model.parameters()

    def configure_optimizers(self):
        optimizer = fused_where_possible(self.optimizer_factory, list(self.trainable_parameters()))
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stop_if_not_finite(self.finite_watch, self.trainer, self)  # before the file is written: the last one stays good
        checkpoint[MODEL_CONFIG_KEY] = self.model_config
