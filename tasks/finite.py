"""Non-finite values in training: the first training step whose loss, any term, or the teacher's outputs
are NaN or infinite stops the run with one line naming them, the epoch and step, and the last good
checkpoint; no checkpoint is written after that step, so the last one stays intact and resumable.

The check adds no host-device synchronisation per step: each step folds its verdict into a few flags kept on
the device (a handful of tiny tensor ops), and the host reads them every CHECK_EVERY_STEPS batches, at the
last batch of each epoch and before every checkpoint is written. A run may thus compute a few more steps on
weights that are no longer finite, but it never saves them, and the message names the first bad step.
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
    """Remembers, on the device, the first step at which a watched value was not finite, and which."""

    def __init__(self) -> None:
        self._first: dict[str, torch.Tensor] = {}       # epoch, batch, step of the first bad step (-1: none yet)
        self._bad: dict[tuple[str, ...], torch.Tensor] = {}  # per set of watched names: which were bad then

    def update(self, values: Mapping[str, torch.Tensor], epoch: int, batch: int, step: int) -> None:
        finite = torch.stack([torch.isfinite(value.detach()).all() for value in values.values()])
        if not self._first:
            self._first = {k: torch.full((), -1, dtype=torch.long, device=finite.device)
                           for k in ("epoch", "batch", "step")}
        new = (self._first["step"] < 0) & ~finite.all()
        for key, now in (("epoch", epoch), ("batch", batch), ("step", step)):
            self._first[key] = torch.where(new, now, self._first[key])
        names = tuple(values)
        bad = self._bad.get(names)
        self._bad[names] = torch.where(new, ~finite, bad if bad is not None else torch.zeros_like(finite))

    def first_bad(self) -> tuple[int, int, int, list[str]] | None:
        """(epoch, batch, step, names) of the first bad step, or None; reads the device (a sync)."""
        if not self._first or int(self._first["step"]) < 0:
            return None
        names = [name for names, bad in self._bad.items() for name, flag in zip(names, bad.tolist()) if flag]
        return int(self._first["epoch"]), int(self._first["batch"]), int(self._first["step"]), names


def last_good_checkpoint(trainer: pl.Trainer) -> Path | None:
    """The every-epoch checkpoint (the resume point) as it is on disk now, if one was written."""
    for callback in trainer.checkpoint_callbacks:
        if getattr(callback, "monitor", None) is None and callback.dirpath:
            path = Path(callback.dirpath) / f"{callback.filename or 'last'}{callback.FILE_EXTENSION}"
            if path.is_file():
                return path
    return None


def stop_if_not_finite(watch: FiniteWatch, trainer: pl.Trainer) -> None:
    """Raise NonFiniteError if any process saw a non-finite value (a collective call under DDP)."""
    found = watch.first_bad()
    if not trainer.strategy.reduce_boolean_decision(found is not None, all=False):
        return
    if found is None:
        where = "in another process"
    else:
        epoch, batch, step, names = found
        where = f"in {', '.join(names)} at epoch {epoch}, step {step} (batch {batch} of the epoch)"
    checkpoint = last_good_checkpoint(trainer)
    kept = (f"the last good checkpoint {checkpoint} is kept intact (resume=true continues from it)" if checkpoint
            else "no checkpoint had been written yet, so nothing is lost")
    rates = sorted({group.get("initial_lr", group["lr"]) for optimizer in trainer.optimizers
                    for group in optimizer.param_groups})
    raise NonFiniteError(f"training stopped: a non-finite value (NaN or infinite) {where}; {kept}; lower the "
                         f"learning rate (optimizer.lr, {', '.join(f'{r:g}' for r in rates)} here) or clip gradients "
                         f"(trainer.gradient_clip_val=1.0), which starts a new run")
