"""Non-finite values in training: the first training step whose loss, any term, or the teacher's outputs
are NaN or infinite stops the run with one line naming them, the epoch and step, and the last good
checkpoint; no checkpoint is written after that step, so the last one stays intact and resumable.

The check adds no host-device synchronisation per step: each step leaves one small vector of its values on
the device (a stack; a tensor that is not a scalar enters as sum(x * 0), NaN exactly when one of its entries
is not finite), and the host reads them all at once every CHECK_EVERY_STEPS batches, at the last batch of each
epoch and before every checkpoint is written. A run may thus compute a few more steps on weights that are no
longer finite, but it never saves them, and the message names the first bad step.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pytorch_lightning as pl
import torch

from errors import UserError

CHECK_EVERY_STEPS = 50


class NonFiniteError(UserError, FloatingPointError):
    """A loss, a term or a model's outputs became NaN or infinite (the message names which and where)."""


class FiniteWatch:
    """The watched values of the steps since the last check: on the device, one vector per step; on the
    host, each step's epoch, batch, global step and value names."""

    def __init__(self) -> None:
        self._values: list[torch.Tensor] = []
        self._steps: list[tuple[int, int, int, tuple[str, ...]]] = []

    def update(self, values: Mapping[str, torch.Tensor], epoch: int, batch: int, step: int) -> None:
        self._values.append(torch.stack([value.detach().float() if value.dim() == 0
                                         else value.detach().float().mul(0).sum() for value in values.values()]))
        self._steps.append((epoch, batch, step, tuple(values)))

    def first_bad(self) -> tuple[int, int, int, list[str]] | None:
        """(epoch, batch, step, names) of the first step since the last check with a value that is not finite,
        or None; reads the device once, and forgets the steps it checked."""
        if not self._values:
            return None
        finite = torch.isfinite(torch.cat(self._values)).tolist()
        steps, self._values, self._steps, start = self._steps, [], [], 0
        for epoch, batch, step, names in steps:
            flags, start = finite[start:start + len(names)], start + len(names)
            if not all(flags):
                return epoch, batch, step, [name for name, ok in zip(names, flags) if not ok]
        return None


def last_good_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The every-epoch checkpoint (the resume point) as it is on disk now, if one was written."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) is None and callback.dirpath:
            path = Path(callback.dirpath) / f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
            if path.is_file():
                return path
    return None


def weights_finite(module: torch.nn.Module) -> bool:
    """Whether every trainable weight of `module` is finite (one norm over them all, read once)."""
    weights = [p.detach() for p in module.parameters() if p.requires_grad]
    return not weights or bool(torch.isfinite(torch.nn.utils.get_total_norm(weights)))


def stop_if_not_finite(watch: FiniteWatch, trainer: pl.Trainer, module: torch.nn.Module | None = None) -> None:
    """Raise NonFiniteError if any process saw a non-finite value (a collective call under DDP). With `module`, its
    trainable weights are checked too: the last step before a check may leave them non-finite while every value
    it computed was finite, and evaluating or saving them would record NaN without a word."""
    found = watch.first_bad()
    if found is None and module is not None and not weights_finite(module):
        found = (trainer.current_epoch, -1, trainer.global_step, ["the trained weights"])
    if not trainer.strategy.reduce_boolean_decision(found is not None, all=False):
        return
    if found is None:
        where = "in another process"
    else:
        epoch, batch, step, names = found
        where = (f"in {', '.join(names)} at epoch {epoch}, step {step} (batch {batch} of the epoch)" if batch >= 0
                 else f"in {', '.join(names)} after step {step} (epoch {epoch})")
    checkpoint = last_good_checkpoint(trainer)
    kept = (f"the last good checkpoint {checkpoint} is kept intact (resume=true continues from it)" if checkpoint
            else "no checkpoint had been written yet, so nothing is lost")
    rates = sorted({group.get("initial_lr", group["lr"]) for optimizer in trainer.optimizers
                    for group in optimizer.param_groups})
    raise NonFiniteError(f"training stopped: a non-finite value (NaN or infinite) {where}; {kept}; lower the "
                         f"learning rate (optimizer.lr, {', '.join(f'{r:g}' for r in rates)} here) or clip gradients "
                         f"(trainer.gradient_clip_val=1.0), which starts a new run"
                         + (f" (add init_from={checkpoint} to start it from the last good weights)" if checkpoint else ""))
