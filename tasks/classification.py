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


def seed_training_step(seed: int, step: int, rank: int = 0) -> None:
    """Seeds torch's global generator for one training step: every random draw that uses it (dropout, e.g. in
    torchvision's classifiers, or a term's sampling) is then a function of (seed, step, process), so a
    resumed run replays the unkilled run's draws and DDP's processes draw apart."""
    torch.manual_seed(hashed_seed(seed, step, rank))


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def setup(self, stage: str) -> None:
        if self.channels_last:  # NHWC: the layout tensor cores and oneDNN convolutions run fastest in
            self.model.to(memory_format=torch.channels_last)

    def memory_format(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs in the models' memory format (NHWC under channels_last)."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def on_train_batch_start(self, batch, batch_idx) -> None:
        seed_training_step(self.seed, self.global_step, self.global_rank)

    def training_step(self, batch, batch_idx):
        x, y, _ = batch
        logits = self.model(self.memory_format(x))
        loss = F.cross_entropy(logits, y)
        self.watch_finite({"loss": loss}, batch_idx)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train/top1", (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return loss

    def watch_finite(self, values: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Note (on the device) whether this step's values are finite; see tasks/finite.py."""
        self.finite_watch.update(values, self.current_epoch, batch_idx, self.global_step)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if (batch_idx + 1) % CHECK_EVERY_STEPS == 0 or batch_idx + 1 >= self.trainer.num_training_batches:
            stop_if_not_finite(self.finite_watch, self.trainer)

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
        parameters = list(self.trainable_parameters())
        keywords = getattr(self.optimizer_factory, "keywords", {}) or {}
        fused = {}
        if (keywords.get("fused") is None and parameters and all(p.is_cuda for p in parameters)
                and "fused" in inspect.signature(self.optimizer_factory.func).parameters):
            fused = {"fused": True}  # one kernel per step on the GPU instead of one per tensor
        optimizer = self.optimizer_factory(parameters, **fused)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        stop_if_not_finite(self.finite_watch, self.trainer)  # before the file is written: the last one stays good
        checkpoint[MODEL_CONFIG_KEY] = self.model_config
