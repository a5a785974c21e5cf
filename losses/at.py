"""Attention transfer: Zagoruyko & Komodakis, "Paying More Attention to Attention", ICLR 2017.
Attention map a(f) = normalise_L2(mean over channels of f^p), flattened; per stage pair the mean over
batch and positions of (a_s - a_t)^2, summed over stages (RepDistiller's form; the larger map is
average-pooled to the smaller one's size)."""
from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import match_spatial, stage_taps

import torch.nn.functional as F


def attention_map(feature, p: float):
    return F.normalize(feature.pow(p).mean(dim=1).flatten(1), dim=1)


class ATTerm(DistillTerm):
    def __init__(self, weight: float = 1000.0, stages=(-3, -2, -1), p: float = 2.0) -> None:
        super().__init__(weight)
        self.student_taps = self.teacher_taps = stage_taps("stage", stages)
        self.p = float(p)

    def forward(self, batch: DistillBatch):
        total = 0.0
        for tap in self.student_taps:
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            total = total + (attention_map(student, self.p) - attention_map(teacher, self.p)).pow(2).mean()
        return total
