"""What a training step logs, at a fraction of `LightningModule.log`'s cost per step.

`self.log` costs about 1,500 Python calls per value per step (its result collection moves and re-checks
every logged value each call), several milliseconds per step for a distillation step's handful of values:
more than a small GPU step's own host work. A training step therefore only adds its values, on their device,
to one running vector (`EpochMeans`: one stack and one add per step, no host synchronisation), and the task
logs through Lightning where someone reads the values:

- every `trainer.log_every_n_steps` batches (the steps on which Lightning writes step values to the logger
  and the throttled progress bar reads them), each value's step figure as `<name>_step`, where a logger or a
  progress bar is there to read it;
- at the end of each training epoch, the epoch's mean of each value weighted by the batch size, as
  `<name>_epoch` for the values also logged per step and `<name>` for the epoch-only ones (top-1), and under
  the plain `<name>` for callbacks (a checkpoint or early stopping monitoring `train/loss` sees the epoch mean).

The names, the weights (the loaded batch's size) and the steps are those that `self.log(name, value,
on_step=True, on_epoch=True)` gives, so the logger's files are unchanged; as there, each process logs its own
share's means under DDP.
"""
from __future__ import annotations

from typing import Mapping

import torch


class EpochMeans:
    """Running sums, on the values' device, of one step's named scalar values weighted by its batch size; the
    names are fixed between resets (a training phase, which changes the terms, starts with a new epoch)."""

    def __init__(self) -> None:
        self.names: tuple[str, ...] = ()
        self.sums: torch.Tensor | None = None
        self.weight = 0
        self.last: dict[str, torch.Tensor] = {}  # the last step's values, detached

    def add(self, values: Mapping[str, torch.Tensor], weight: int) -> None:
        self.last = {name: value.detach() for name, value in values.items()}
        stacked = torch.stack([value.float() for value in self.last.values()])
        if self.sums is None:
            self.names, self.sums = tuple(values), stacked * weight
        elif tuple(values) != self.names:
            raise ValueError(f"logged values changed within an epoch: {list(values)} after {list(self.names)}")
        else:
            self.sums.add_(stacked, alpha=weight)
        self.weight += weight

    def pop(self) -> dict[str, torch.Tensor]:
        """{name: weighted mean} since the last pop (empty if nothing was added), and a fresh start."""
        if self.sums is None:
            return {}
        means = dict(zip(self.names, (self.sums / self.weight).unbind()))
        self.names, self.sums, self.weight, self.last = (), None, 0, {}
        return means


def logs_step_values(trainer) -> bool:
    """Whether this training batch's values are logged: where a logger or a progress bar reads them, on the batches
    after which Lightning writes step values to the loggers (every trainer.log_every_n_steps optimizer steps, and
    the last one of a stopping run)."""
    if not trainer.loggers and trainer.progress_bar_callback is None:
        return False
    return trainer._logger_connector.should_update_logs or bool(trainer.fast_dev_run)
