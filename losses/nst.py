"""Neuron selectivity transfer: Huang & Wang, "Like What You Like", 2017 (RepDistiller's NSTLoss). Each
channel's map, flattened over positions and L2-normalised, is one sample; loss = squared MMD between the
student's and the teacher's channel samples with the polynomial kernel k(x, y) = (x . y)^2 (degree 2, c 0):
mean K(t, t) + mean K(s, s) - 2 mean K(s, t), averaged over the batch, summed over stages. Channel counts
may differ (MMD compares sample sets); spatial sizes are matched by average-pooling the larger map."""
import torch
import torch.nn.functional as F

from losses.stagewise import StagewiseTerm
from losses.base import DistillBatch
from losses.feature_utils import match_spatial


def polynomial_kernel_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a @ b.transpose(1, 2)).pow(2).mean()


class NSTTerm(StagewiseTerm):
    def __init__(self, weight: float = 50.0, stages=None) -> None:
        super().__init__(weight, stages, "kd.terms.nst.stages")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
        self.require_feature_maps(student_shapes, teacher_shapes, "NST")

    def forward(self, batch: DistillBatch):
        self.check_bound()
        total = 0.0
        for tap in self.student_taps:
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            student = F.normalize(student.flatten(2), dim=2)
            teacher = F.normalize(teacher.flatten(2), dim=2)
            total = total + (polynomial_kernel_mean(teacher, teacher) + polynomial_kernel_mean(student, student)
                             - 2 * polynomial_kernel_mean(student, teacher))
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}"
