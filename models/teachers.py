"""Teacher wrappers: frozen models that answer `teacher(x, indices) -> (logits, features)`.

`indices` are the examples' original training-set indices during training and None for held-out data
(validation and test), which is what lets a cross-fitted teacher route each training example to the one
member that never saw it.

- single:   one model.
- ensemble: the log of the mean of the members' probabilities; features from one chosen member.
- crossfit: member k was trained without fold k; a training example in fold k is answered (logits and
            features) by member k alone; held-out examples by the ensemble of all members.
- cached:   any of these, its logits on the training examples (in fixed augmented views) computed once.

BatchNorm (`batchnorm`): "running" (default) normalises with the teacher's running statistics, as a teacher in eval
mode does. "batch" normalises each training batch with its own statistics, as a teacher left in train mode does
(mdistiller's OFD.train switches the teacher to train mode; torchdistill since May 2023, commit fcc8727 "Do not
touch teacher model by default", never puts it in eval mode), but without what train mode also does in those
anchors: their teacher's running statistics drift with every batch, here they never move (held-out data is still
answered with them), and no weight of the teacher changes in either. Only BatchNorm is affected (no dropout).
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterable, Sequence

import torch
from torch import nn

from errors import ConfigError
from models.features import FeatureTaps


def log_mean_probability(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """log((1/M) sum_m softmax(l_m)), computed stably in log space."""
    if len(logits) == 1:
        return logits[0]
    log_probs = torch.stack([l.float().log_softmax(dim=-1) for l in logits])
    return torch.logsumexp(log_probs, dim=0) - math.log(len(logits))


BATCHNORM_MODES = ("running", "batch")


@contextmanager
def batch_statistics(norms: Sequence[nn.modules.batchnorm._BatchNorm]):
    """Inside, the BatchNorm layers `norms` normalise with each batch's own statistics and update nothing (train
    mode without running statistics: torch passes none to batch_norm); their modes are restored on exit."""
    saved = [(norm.training, norm.track_running_stats) for norm in norms]
    for norm in norms:
        norm.training, norm.track_running_stats = True, False
    try:
        yield
    finally:
        for norm, (training, tracking) in zip(norms, saved):
            norm.training, norm.track_running_stats = training, tracking


class FrozenTeacher(nn.Module):
    """Eval mode and `requires_grad=False` for good: `train()` cannot switch it back, so BatchNorm
    statistics never move during the student's fit. One or more members (an ensemble); `model` is the
    member whose features feature terms read."""

    def __init__(self, members: nn.Module | Sequence[nn.Module], feature_member: int = 0,
                 batchnorm: str = "running") -> None:
        super().__init__()
        if batchnorm not in BATCHNORM_MODES:
            raise ConfigError(f"teacher.batchnorm must be one of {list(BATCHNORM_MODES)}, got {batchnorm!r}; "
                              f"'running' (eval mode) unless the anchor ran its teacher's BatchNorm in train mode")
        self.batchnorm = batchnorm
        members = [members] if isinstance(members, nn.Module) else list(members)
        if not members:
            raise ConfigError("a teacher needs at least one model; give teacher.checkpoints or teacher.size >= 1")
        classes = {getattr(m, "num_classes", None) for m in members}
        if len(classes) > 1:
            raise ConfigError(f"the teacher's members predict different numbers of classes {sorted(map(str, classes))}; "
                              f"an ensemble needs members trained on the same data")
        if not 0 <= feature_member < len(members):
            raise ConfigError(f"teacher.feature_member={feature_member} is out of range for {len(members)} members; "
                              f"use 0 to {len(members) - 1}")
        self.members = nn.ModuleList(members)
        self.feature_member = feature_member
        for parameter in self.members.parameters():
            parameter.requires_grad_(False)
        self.taps: list = []
        self.train(False)
        self._norms = [m for m in self.members.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    @contextmanager
    def _normalisation(self, indices: torch.Tensor | None):
        """Batch statistics on training batches (indices given) when teacher.batchnorm is 'batch'."""
        if self.batchnorm == "batch" and indices is not None:
            with batch_statistics(self._norms):
                yield
        else:
            yield

    @property
    def model(self) -> nn.Module:
        return self.members[self.feature_member]

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    counts_training_calls = True  # every training batch runs the model (a cached teacher's does not)

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)

    def example_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """The original training indices of a training batch's `indices` (a cached teacher's encode views)."""
        return indices

    def _tapped_members(self) -> list[nn.Module]:
        return [self.model]

    def capture(self, taps: Iterable[str]) -> None:
        taps = tuple(taps)
        for tap in self.taps:
            tap.remove()
        self.taps = [FeatureTaps(member, taps) for member in self._tapped_members()] if taps else []

    def _features(self, position: int = 0) -> dict[str, torch.Tensor]:
        return self.taps[position].pop() if self.taps else {}

    @torch.no_grad()
    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None):
        with self._normalisation(indices):
            logits = [member(x) for member in self.members]
        return log_mean_probability(logits), self._features()


class CrossFitTeacher(FrozenTeacher):
    """`fold_of[i]` is the fold of training example i (-1: in no fold, e.g. validation); member k never
    trained on fold k."""

    def __init__(self, members: Sequence[nn.Module], fold_of: torch.Tensor, batchnorm: str = "running") -> None:
        super().__init__(members, batchnorm=batchnorm)
        folds = int(fold_of.max()) + 1
        if folds != len(members):
            raise ConfigError(f"the fold assignment has {folds} folds but {len(members)} fold teachers were given; "
                              f"give teacher.folds teachers, fold i's at position i")
        self.register_buffer("fold_of", fold_of.long(), persistent=False)

    def _tapped_members(self) -> list[nn.Module]:
        return list(self.members)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None):
        folds = (torch.full((len(x),), -1, dtype=torch.long, device=x.device) if indices is None
                 else self.fold_of[indices.to(self.fold_of.device)].to(x.device))
        logits: torch.Tensor | None = None
        features: dict[str, torch.Tensor] = {}

        def place(mask: torch.Tensor, part_logits: torch.Tensor, part_features: dict) -> None:
            nonlocal logits
            if logits is None:
                logits = x.new_empty((len(x), part_logits.shape[1]), dtype=torch.float32)
            logits[mask] = part_logits
            for tap, value in part_features.items():
                if tap not in features:
                    features[tap] = value.new_empty((len(x), *value.shape[1:]))
                features[tap][mask] = value

        for fold, member in enumerate(self.members):
            mask = folds == fold
            if mask.any():
                with self._normalisation(indices):  # each fold's rows form that member's batch
                    part = member(x[mask])
                place(mask, part, self._features(fold))
        held_out = folds < 0
        if held_out.any():
            # Every member is unbiased on held-out data: their ensemble answers; features from member 0.
            part = [member(x[held_out]) for member in self.members]
            part_features = [self._features(fold) for fold in range(len(self.members))]
            place(held_out, log_mean_probability(part), part_features[0])
        return logits, features


class CachedTeacher(FrozenTeacher):
    """A teacher whose outputs on the training examples were computed once (`table[index, view]`, stored on
    disk by runs/teacher_cache.py): training batches are answered from the table without running the
    model; held-out data (indices None) runs the wrapped teacher. Logits only: no training features."""

    counts_training_calls = False

    def __init__(self, inner: FrozenTeacher, table: torch.Tensor, cache_calls: int) -> None:
        if inner.batchnorm == "batch":
            raise ConfigError("teacher.batchnorm=batch makes the teacher's outputs depend on the batch, so they cannot "
                              "be cached; use teacher.cache=false (and not teacher=cached), or teacher.batchnorm=running")
        super().__init__(list(inner.members), inner.feature_member)
        self.inner = inner
        self.views = table.shape[1]
        self.register_buffer("table", table, persistent=False)
        self.register_buffer("cached", torch.isfinite(table).all(dim=-1), persistent=False)
        self.cache_calls = int(cache_calls)  # model calls made to build the table in this run (0 if reused)

    def capture(self, taps: Iterable[str]) -> None:
        taps = tuple(taps)
        if taps:
            raise ConfigError(f"teacher=cached stores the teacher's logits only, but this method reads teacher "
                              f"features {list(taps)}; use teacher=single (or a logit method)")

    def example_indices(self, indices: torch.Tensor) -> torch.Tensor:
        return torch.div(indices, self.views, rounding_mode="floor")

    @torch.no_grad()
    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None):
        if indices is None:
            return self.inner(x)
        example, view = self.example_indices(indices), indices % self.views
        # Checked on the device without waiting for it (no host sync per step): on CPU it raises at once,
        # on CUDA as a device-side assertion at the next synchronisation.
        torch._assert_async(self.cached[example, view].all(), "a training example outside the cached pool reached "
                            "the cached teacher; the cache was built for another training split")
        return self.table[example, view].to(x.device), {}
