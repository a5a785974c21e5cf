"""DIST: Huang et al., "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022.

Match relations instead of exact probabilities: inter-class relation = 1 - Pearson correlation between the
student's and teacher's softened prediction vectors of each example (mean over examples); intra-class
relation = 1 - Pearson correlation of each class's scores across the batch (mean over classes); both
times T^2."""
import torch

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm

PEARSON_EPS = 1e-8


def pearson_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + PEARSON_EPS)


class DISTTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, weight_inter: float = 1.0, weight_intra: float = 1.0,
                 temperature: float = 4.0) -> None:
        super().__init__(weight)
        if not (weight_inter >= 0 and weight_intra >= 0 and weight_inter + weight_intra > 0):
            raise ConfigError(f"kd.terms.dist needs weight_inter >= 0 and weight_intra >= 0, not both 0 (got "
                              f"{weight_inter}, {weight_intra}); the DIST paper uses 1 and 1")
        self.weight_inter, self.weight_intra = float(weight_inter), float(weight_intra)
        self.temperature = float(temperature)

    def forward(self, batch: DistillBatch):
        t = self.temperature
        student = (batch.student_logits.float() / t).softmax(dim=1)
        teacher = (batch.teacher_logits.float() / t).softmax(dim=1)
        inter = (1 - pearson_rows(student, teacher)).mean()
        intra = (1 - pearson_rows(student.t(), teacher.t())).mean()
        return t * t * (self.weight_inter * inter + self.weight_intra * intra)
