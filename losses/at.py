"""Attention transfer: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.
Attention map a(f) = normalise_L2(mean over channels of |f|^p), flattened over positions; per stage pair
the mean over batch and positions of (a_s - a_t)^2, summed over stages (RepDistiller's `Attention`, which
pairs feat[1:-1]: every stage but the stem). Where the maps differ in size, the larger is average-pooled
to the smaller (RepDistiller's rule), so cross-architecture pairs need no trainable part.

Also home of `StagewiseTerm`, the base of the terms over a list of stages (AT, VID, NST, KD-SVD)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import match_spatial
from models import feature_spec


def parse_stages(stages, key: str) -> list[int] | None:
    if stages is None:
        return None
    try:
        parsed = [int(stage) for stage in stages]
    except (TypeError, ValueError):
        raise ConfigError(f"{key} must be a list of stage indices or null, got {stages!r}; "
                          f"use e.g. {key}=[1,2,3], or null for every stage but the stem") from None
    if not parsed or len(set(parsed)) != len(parsed):
        raise ConfigError(f"{key} must name at least one stage, each once, got {stages!r}; "
                          f"use e.g. {key}=[1,2,3], or null for every stage but the stem")
    return parsed


class StagewiseTerm(DistillTerm):
    """A term over pairs of equally indexed student and teacher stages. `stages: null` means every stage but
    the stem, as RepDistiller's feat[1:-1]; it is settled by `bind_models` once both architectures are known,
    counted from the deep end so that models with different stage counts still pair their deepest stages."""

    def __init__(self, weight: float, stages, key: str) -> None:
        super().__init__(weight)
        self.key = key
        self.stages = parse_stages(stages, key)
        self._set_stages(self.stages)

    def _set_stages(self, stages) -> None:
        self.student_taps = self.teacher_taps = () if stages is None else tuple(f"stage:{i}" for i in stages)

    @property
    def reads_teacher_features(self) -> bool:
        return True  # its stages may be settled only later, by bind_models

    def bind_models(self, student: nn.Module, teacher: nn.Module) -> None:
        """Called by the distillation task before it hooks the taps."""
        if self.stages is not None:
            return
        count = min(len(feature_spec(student).stages), len(feature_spec(teacher).stages))
        if count < 2:
            raise ConfigError(f"{self.key}=null (every stage but the stem) needs models with at least 2 stages; "
                              f"the shallower declares {count}: name the stages, e.g. {self.key}=[0]")
        self._set_stages(range(1 - count, 0))

    def check_bound(self) -> None:
        if not self.student_taps:
            raise ConfigError(f"{self.key}=null is settled from the models' stage counts by bind_models(student, "
                              f"teacher) before setup; call it, or name the stages, e.g. {self.key}=[1,2,3]")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.check_bound()


def attention_map(feature: torch.Tensor, p: float) -> torch.Tensor:
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


class ATTerm(StagewiseTerm):
    def __init__(self, weight: float = 1000.0, stages=None, p: float = 2.0) -> None:
        super().__init__(weight, stages, "kd.terms.at.stages")
        self.p = float(p)
        if not self.p > 0:
            raise ConfigError(f"kd.terms.at.p must be > 0, got {p}; use p=2 (the paper's and RepDistiller's)")

    def forward(self, batch: DistillBatch):
        self.check_bound()
        total = 0.0
        for tap in self.student_taps:
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            total = total + (attention_map(student, self.p) - attention_map(teacher, self.p)).pow(2).mean()
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}, p={self.p}"
