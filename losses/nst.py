"""Neuron selectivity transfer: Huang & Wang, 2017. Each channel's map, flattened over positions and
L2-normalised, is a sample; loss = squared MMD with the polynomial kernel k(x, y) = (x . y)^2:
mean K(t, t) + mean K(s, s) - 2 mean K(s, t), per stage, summed (the larger map pooled to the smaller)."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import match_spatial, stage_taps


def polynomial_kernel_mean(a, b):
    return (a @ b.transpose(1, 2)).pow(2).mean()


class NSTTerm(DistillTerm):
    def __init__(self, weight: float = 50.0, stages=(-3, -2, -1)) -> None:
        super().__init__(weight)
        self.student_taps = self.teacher_taps = stage_taps("stage", stages)

    def forward(self, batch: DistillBatch):
        total = 0.0
        for tap in self.student_taps:
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            student = F.normalize(student.flatten(2), dim=2)
            teacher = F.normalize(teacher.flatten(2), dim=2)
            total = total + (polynomial_kernel_mean(teacher, teacher) + polynomial_kernel_mean(student, student)
                             - 2 * polynomial_kernel_mean(student, teacher))
        return total
