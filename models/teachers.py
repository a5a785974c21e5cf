"""Teacher wrappers: a frozen model that answers `teacher(x, indices) -> (logits, features)`.

The `indices` argument is what lets later teachers (cross-fitted, cached) answer per example.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn


class FrozenTeacher(nn.Module):
    """Eval mode and `requires_grad=False` for good: `train()` cannot switch it back, so BatchNorm
    statistics never move during the student's fit."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        self.taps = None
        self.train(False)

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def train(self, mode: bool = True) -> "FrozenTeacher":
        return super().train(False)

    def capture(self, taps: Iterable[str]) -> None:
        from tasks.features import FeatureTaps  # tasks depend on models, not the other way round
        if self.taps is not None:
            self.taps.remove()
        self.taps = FeatureTaps(self.model, taps)

    @torch.no_grad()
    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None):
        logits = self.model(x)
        features = self.taps.pop() if self.taps is not None else {}
        return logits, features
