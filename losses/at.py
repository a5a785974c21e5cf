"""Attention transfer: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.
Attention map a(f) = normalise_L2(mean over channels of |f|^p), flattened over positions; per stage pair
the mean over batch and positions of (a_s - a_t)^2, summed over stages (RepDistiller's `Attention`, which
pairs feat[1:-1]: every stage but the stem). Where the maps differ in size, the larger is average-pooled
to the smaller (RepDistiller's rule), so cross-architecture pairs need no trainable part."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch
from losses.feature_utils import match_spatial
from losses.stagewise import StagewiseTerm


def attention_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


class ATTerm(StagewiseTerm):
    def __init__(self, weight: float = 1000.0, stages=None, p: float = 2.0) -> None:
        super().__init__(weight, stages, "kd.terms.at.stages")
        self.p = float(p)
        if not self.p > 0:
            raise ConfigError(f"kd.terms.at.p must be > 0, got {p}; use p=2 (the paper's and RepDistiller's)")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
        self.require_feature_maps(student_shapes, teacher_shapes, "AT")

    def forward(self, batch: DistillBatch):
        self.check_bound()
        total = 0.0
        for tap in self.student_taps:
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            total = total + (attention_map(student, self.p) - attention_map(teacher, self.p)).pow(2).mean()
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}, p={self.p}"
