"""Correlation congruence: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019.
Embeddings are projected (linear, L2-normalised, as RepDistiller's Embed) to `feat_dim`; the batch
correlation matrix uses the paper's Taylor-expanded Gaussian kernel
k(x, y) = sum_{p=0..P} exp(-2 gamma) (2 gamma)^p / p! (x . y)^p; loss = ||K_s - K_t||_F^2 / B^2."""
import math

import torch.nn.functional as F
from torch import nn

from losses.base import DistillBatch, DistillTerm


class CCTerm(DistillTerm):
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)

    def __init__(self, weight: float = 0.02, feat_dim: int = 128, gamma: float = 0.4, order: int = 2) -> None:
        super().__init__(weight)
        self.feat_dim, self.gamma, self.order = int(feat_dim), float(gamma), int(order)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.embed_student = nn.Linear(math.prod(student_shapes["embedding"][1:]), self.feat_dim)
        self.embed_teacher = nn.Linear(math.prod(teacher_shapes["embedding"][1:]), self.feat_dim)

    def correlation(self, embedding):
        dot = embedding @ embedding.t()
        return sum(math.exp(-2 * self.gamma) * (2 * self.gamma) ** p / math.factorial(p) * dot ** p
                   for p in range(self.order + 1))

    def forward(self, batch: DistillBatch):
        student = F.normalize(self.embed_student(batch.student_features["embedding"].float().flatten(1)), dim=1)
        teacher = F.normalize(self.embed_teacher(batch.teacher_features["embedding"].float().flatten(1)), dim=1)
        difference = self.correlation(student) - self.correlation(teacher)
        return difference.pow(2).sum() / student.shape[0] ** 2
