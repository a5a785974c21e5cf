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
    """Running sums, on the values' device, of each step's named scalar values weighted by its batch size: one
    vector per set of names (a set that changes within an epoch, which no step of the project's does, starts its
    own), so each name's mean is over the steps that gave it, as self.log's is."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, ...], list] = {}  # names -> [weighted sums (tensor), total weight]
        self.last: dict[str, torch.Tensor] = {}  # the last step's values, detached

    def add(self, values: Mapping[str, torch.Tensor], weight: int) -> None:
        self.last = {name: value.detach() for name, value in values.items()}
        stacked = torch.stack([value.float() for value in self.last.values()])
        entry = self.sums.get(names := tuple(values))
        if entry is None:
            self.sums[names] = [stacked * weight, weight]
        else:
            entry[0].add_(stacked, alpha=weight)
            entry[1] += weight

    def pop(self) -> dict[str, torch.Tensor]:
        """{name: weighted mean} since the last pop (empty if nothing was added), and a fresh start."""
        totals: dict[str, list] = {}
        for names, (sums, weight) in self.sums.items():
            for name, value in zip(names, sums.unbind()):
                total = totals.setdefault(name, [0, 0])
                total[0], total[1] = total[0] + value, total[1] + weight
        self.sums, self.last = {}, {}
        return {name: value / weight for name, (value, weight) in totals.items()}


def logs_step_values(trainer) -> bool:
    """Whether this training batch's values are logged: where a logger or a progress bar reads them, on the batches
    after which Lightning writes step values to the loggers (every trainer.log_every_n_steps optimizer steps, and
    the last one of a stopping run)."""
    if not trainer.loggers and trainer.progress_bar_callback is None:
        return False
    return trainer._logger_connector.should_update_logs or bool(trainer.fast_dev_run)
