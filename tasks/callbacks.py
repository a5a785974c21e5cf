"""Callbacks: those the runner always adds (the run record needs their measurements), and training schedules
that act on validation results."""
from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
import torch
from torch import nn

from errors import ConfigError
from losses.base import DistillTerm
from tasks.units import shown


class TrainThroughput(pl.Callback):
    """Training samples per second, timed over training batches only (validation excluded); under DDP, of all
    processes together (each takes an equal share of every step)."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += len(batch[1]) * trainer.world_size  # the labels: the inputs may be two views (Views)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None:
            self.seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    @property
    def samples_per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None


def progress_bar(**kwargs) -> pl.callbacks.ProgressBar:
    """The progress display of a fit: a rich bar on a terminal; a line per epoch where the output goes to a file
    or a pipe (`tee`, a job's log), where a bar would show nothing until the end."""
    return ThrottledProgressBar(**kwargs) if sys.stdout.isatty() else EpochLines()


def shown_metrics(metrics: dict) -> dict[str, str]:
    """Logged values as the summaries and tables show them (accuracy-like in percent), without the logger's
    version number (v_num), which says nothing about the fit."""
    return {key: shown(key, value) if isinstance(value, (int, float)) else value
            for key, value in metrics.items() if key != "v_num"}


class ThrottledProgressBar(pl.callbacks.RichProgressBar):
    """Lightning's rich progress bar, reading the logged step values (train/loss) every `every_n_steps` training
    batches (default: the trainer's log_every_n_steps, when the logger reads them too) instead of after every
    batch. On a GPU each read is a host-device synchronisation (`.item()`) that leaves the GPU idle while the
    next step's work is queued; epoch and validation values are read as before. Its description says what it
    trains (`label`, set by the run: "teacher resnet32", "scratch student resnet8", "student resnet8, kd=dkd")."""

    def __init__(self, every_n_steps: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.every_n_steps = every_n_steps
        self.label = ""
        self._shown: dict | None = None
        self._between_reads = False

    def _get_train_description(self, current_epoch: int) -> str:
        return f"{self.label + ': ' if self.label else ''}epoch {current_epoch + 1}/{self.trainer.max_epochs}"

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = self.every_n_steps or trainer.log_every_n_steps
        self._between_reads = self._shown is not None and (batch_idx + 1) % max(1, every) != 0
        try:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        finally:
            self._between_reads = False

    def get_metrics(self, trainer, pl_module) -> dict:
        if not self._between_reads:
            self._shown = shown_metrics(super().get_metrics(trainer, pl_module))
        return self._shown


class EpochLines(pl.callbacks.ProgressBar):
    """Progress where the output is not a terminal: after each training epoch (its validation included) one line,
    e.g. `teacher resnet32: epoch 3/30 | train/loss 0.4120 | val/top1 92.36 | ...`, flushed at once."""

    def __init__(self) -> None:
        super().__init__()
        self.label = ""
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        metrics = shown_metrics(self.get_metrics(trainer, pl_module))
        parts = [f"{self.label + ': ' if self.label else ''}epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                 *(f"{key} {value}" for key, value in metrics.items())]
        print(" | ".join(parts), flush=True)


def term_state_keys(module: nn.Module) -> set[str]:
    """State-dict keys of what the distillation terms hold themselves (not in a trainable submodule): each term's
    direct buffers and extra state."""
    keys = set()
    for name, child in module.named_modules():
        if isinstance(child, DistillTerm):
            prefix = f"{name}." if name else ""
            keys |= {prefix + buffer for buffer, _ in child.named_buffers(recurse=False)}
            keys.add(prefix + "_extra_state")
    return keys


class PlateauRestart(pl.Callback):
    """Comparative KD's schedule (Wilf et al., WACV 2025): when the monitored validation metric has not improved
    for `patience` epochs, reload the weights of the best checkpoint and multiply every learning rate by
    `factor`; the plateau after `max_decays` decays ends training, on the best weights. The best checkpoint
    (callbacks.checkpoint) is the one reloaded, so the callback and the run record agree on "best". Use it with
    scheduler=none: a scheduler would overwrite the decayed rates. CKD's `--lr_decay_times N` counts plateaus,
    not decays (train_student.py stops at the N-th plateau, after lr phases lr ... lr * factor^(N-1)): it is
    max_decays = N - 1.

    What is reloaded: as CKD reloads its trainable modules only (the student and the terms' trainable parts, e.g.
    CRD's embeddings, with their BatchNorm statistics), the distillation terms' own state, the buffers a term holds
    itself (CRD's memory bank and partition-function estimates, a queue and its pointer) and its extra state (the
    negatives' draw stream), carries on from where training is, not from the best checkpoint."""

    def __init__(self, monitor: str = "val/top1", mode: str = "max", patience: int = 50, factor: float = 0.1,
                 max_decays: int = 3) -> None:
        if mode not in ("max", "min") or patience < 1 or not 0 < factor < 1 or max_decays < 0:
            raise ConfigError(f"PlateauRestart needs mode max or min, patience >= 1, 0 < factor < 1 and max_decays "
                              f">= 0; got mode={mode}, patience={patience}, factor={factor}, max_decays={max_decays}")
        self.monitor, self.mode, self.patience, self.factor, self.max_decays = monitor, mode, patience, factor, max_decays
        self.best: float | None = None
        self.wait = 0
        self.decays = 0

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self.monitor not in trainer.callback_metrics:
            raise ConfigError(f"PlateauRestart monitors {self.monitor!r}, which validation does not log; logged: "
                              f"{sorted(trainer.callback_metrics)}")
        value = float(trainer.callback_metrics[self.monitor])
        if self.best is None or (value > self.best if self.mode == "max" else value < self.best):
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait < self.patience:
            return
        self.wait = 0
        self._reload_best(trainer, pl_module)
        if self.decays >= self.max_decays:
            trainer.should_stop = True
            return
        self.decays += 1
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] *= self.factor

    def _reload_best(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        best = next((c for c in trainer.checkpoint_callbacks if getattr(c, "monitor", None) == self.monitor), None)
        if best is None or not best.best_model_path:
            raise ConfigError(f"PlateauRestart reloads the best checkpoint by {self.monitor!r}; configure "
                              f"callbacks.checkpoint with monitor {self.monitor}")
        state = torch.load(best.best_model_path, map_location=pl_module.device, weights_only=False)["state_dict"]
        kept = term_state_keys(pl_module)
        pl_module.load_state_dict({key: value for key, value in state.items() if key not in kept}, strict=False)

    def state_dict(self) -> dict:
        return {"best": self.best, "wait": self.wait, "decays": self.decays}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best, self.wait, self.decays = state_dict["best"], state_dict["wait"], state_dict["decays"]
