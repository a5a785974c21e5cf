"""Callbacks the runner always adds (the run record needs their measurements)."""
from __future__ import annotations

import time

import pytorch_lightning as pl


class TrainThroughput(pl.Callback):
    """Training samples per second, timed over training batches only (validation excluded)."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.samples += int(batch[0].shape[0])

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self._epoch_start is not None:
            self.seconds += time.perf_counter() - self._epoch_start
            self._epoch_start = None

    @property
    def samples_per_second(self) -> float | None:
        return self.samples / self.seconds if self.seconds > 0 else None
