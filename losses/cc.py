"""Correlation congruence: Peng et al., "Correlation Congruence for Knowledge Distillation", ICCV 2019.
Student and teacher embeddings are each mapped by a trainable linear layer to `feat_dim` (RepDistiller's
LinearEmbed, 128-d, not normalised), then compared by one of two estimates:

- form "consecutive" (default; RepDistiller's `Correlation`, with which its beta 0.02 was tuned): with
  d_i = |e_s,i - e_t,i| (element-wise), loss = mean over i < B of sum_k d_i,k d_i+1,k. It scores the
  bilinear (Taylor-1) congruence only on the B - 1 consecutive pairs (i, i+1) of the batch, in linear time.
- form "matrix" (the paper's eq. 5): C = K(E, E) over the batch, loss = ||C_s - C_t||_F^2 / B^2, with
  `kernel` "bilinear" (C = E E^T, the Taylor-1 kernel up to constants) or "gaussian", the paper's
  order-P Taylor expansion k(x, y) = sum_{p<=P} exp(-2 gamma) (2 gamma)^p / p! (x . y)^p.
`normalize: true` L2-normalises the embeddings first (the paper's Gaussian kernel assumes unit vectors)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm

FORMS = ("consecutive", "matrix")
KERNELS = ("bilinear", "gaussian")


class CCTerm(DistillTerm):
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)

    def __init__(self, weight: float = 0.02, feat_dim: int = 128, form: str = "consecutive",
                 kernel: str = "bilinear", gamma: float = 0.4, order: int = 2, normalize: bool = False) -> None:
        super().__init__(weight)
        if int(feat_dim) < 1:
            raise ConfigError(f"kd.terms.cc.feat_dim must be >= 1, got {feat_dim}; use 128 (RepDistiller's)")
        if form not in FORMS:
            raise ConfigError(f"kd.terms.cc.form must be one of {FORMS}, got {form!r}")
        if kernel not in KERNELS:
            raise ConfigError(f"kd.terms.cc.kernel must be one of {KERNELS}, got {kernel!r}")
        if not float(gamma) > 0 or int(order) < 0:
            raise ConfigError(f"kd.terms.cc needs gamma > 0 and order >= 0, got gamma={gamma}, order={order}; "
                              f"use gamma=0.4, order=2 (the paper's)")
        self.feat_dim, self.form, self.kernel = int(feat_dim), form, kernel
        self.gamma, self.order, self.normalize = float(gamma), int(order), bool(normalize)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.embed_student = nn.Linear(math.prod(student_shapes["embedding"][1:]), self.feat_dim)
        self.embed_teacher = nn.Linear(math.prod(teacher_shapes["embedding"][1:]), self.feat_dim)

    def embed(self, layer: nn.Module, feature: torch.Tensor) -> torch.Tensor:
        embedding = layer(feature.float().flatten(1))
        return F.normalize(embedding, dim=1) if self.normalize else embedding

    def correlation(self, embedding: torch.Tensor) -> torch.Tensor:
        dot = embedding @ embedding.t()
        if self.kernel == "bilinear":
            return dot
        return sum(math.exp(-2 * self.gamma) * (2 * self.gamma) ** p / math.factorial(p) * dot ** p
                   for p in range(self.order + 1))

    def forward(self, batch: DistillBatch):
        student = self.embed(self.embed_student, batch.student_features["embedding"])
        teacher = self.embed(self.embed_teacher, batch.teacher_features["embedding"])
        if self.form == "consecutive":
            delta = (student - teacher).abs()   # a batch of 1 has no consecutive pair: 0, not NaN
            if len(delta) < 2:
                return delta.sum() * 0
            return (delta[:-1] * delta[1:]).sum(dim=1).mean()
        difference = self.correlation(student) - self.correlation(teacher)
        return difference.pow(2).sum() / student.shape[0] ** 2

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, feat_dim={self.feat_dim}, form={self.form}, kernel={self.kernel}, "
                f"normalize={self.normalize}")
