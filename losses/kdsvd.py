"""KD-SVD: Lee, Kim & Song, "Self-supervised Knowledge Distillation Using Singular Value Decomposition",
ECCV 2018, in RepDistiller's form (its KDSVD, on feat[1:-1]: every stage but the stem).

Per stage, each sample's feature map as a (positions x channels) matrix X = U S V^T; its top right singular
vectors (channel space) summarise it. The teacher keeps its top k (unit columns of V, and its top k singular
values L2-normalised over k, s_hat); the student computes k + 3 and, for each teacher vector, takes the one
with the largest |cosine| to it, sign-flipped to agree (singular vectors are defined up to sign and their
order can swap). Both sets are scaled by the teacher's s_hat. Between consecutive stages a and b (in the
order of `stages`) the relation R[c, c', j] = exp(-(v_b[c, j] - v_a[c', j])^2 / 8) links every channel c of
stage b to every channel c' of stage a, per vector j; loss = sum over pairs, channels and j of
(R_s - R_t)^2, divided by the batch size; non-finite entries (a degenerate SVD) count 0, as RepDistiller.

The relations are indexed by channel, so student and teacher need equal channel counts at every used stage
(e.g. resnet32x4 -> resnet8x4, resnet56 -> resnet20); other pairs are refused at setup."""
from __future__ import annotations

import torch

from errors import ConfigError
from losses.stagewise import StagewiseTerm
from losses.base import DistillBatch

RBF_SCALE = 8.0      # RepDistiller's (and the original code's) fixed bandwidth
EXTRA_STUDENT_VECTORS = 3


def top_right_singular(feature: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C, count) unit right singular vectors and (B, count) L2-normalised singular values."""
    rows = feature.flatten(2).transpose(1, 2)                       # (B, H*W, C)
    if rows.requires_grad:
        # a repeated singular value makes the SVD's gradient non-finite; drop it rather than poison the student
        rows.register_hook(lambda grad: torch.where(torch.isfinite(grad), grad, torch.zeros_like(grad)))
    _, values, vectors_h = torch.linalg.svd(rows, full_matrices=False)
    vectors = torch.nan_to_num(vectors_h.transpose(1, 2)[:, :, :count], nan=0.0, posinf=0.0, neginf=0.0)
    values = torch.nan_to_num(values[:, :count], nan=0.0, posinf=0.0, neginf=0.0)
    return torch.nn.functional.normalize(vectors, dim=1), torch.nn.functional.normalize(values, dim=1)


def align_to(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """For each teacher vector, the student vector with the largest |cosine|, signed to agree with it."""
    cosine = student.transpose(1, 2) @ teacher                      # (B, k + 3, k)
    best = cosine.abs().argmax(dim=1, keepdim=True)                 # (B, 1, k)
    selector = torch.zeros_like(cosine).scatter_(1, best, cosine.gather(1, best).sign())
    return student @ selector                                       # (B, C, k)


def channel_relations(deeper: torch.Tensor, shallower: torch.Tensor) -> torch.Tensor:
    """(B, C_b, C_a, k): exp(-(v_b[c, j] - v_a[c', j])^2 / 8)."""
    return torch.exp(-(deeper.unsqueeze(2) - shallower.unsqueeze(1)).pow(2) / RBF_SCALE)


class KDSVDTerm(StagewiseTerm):
    def __init__(self, weight: float = 1.0, stages=None, k: int = 1) -> None:
        super().__init__(weight, stages, "kd.terms.kdsvd.stages")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"kd.terms.kdsvd.k must be an integer >= 1, got {k!r}; use k=1 (RepDistiller's)")
        if isinstance(self.stages, list) and len(self.stages) < 2:
            raise ConfigError(f"KD-SVD relates consecutive stages, so kd.terms.kdsvd.stages needs at least 2, "
                              f"got {stages!r}; use e.g. [1, 2, 3], or null for every stage but the stem")
        self.k = k

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
        if len(self.student_taps) < 2:
            raise ConfigError("KD-SVD relates consecutive stages; these models give it fewer than 2: "
                              "name at least two in kd.terms.kdsvd.stages")
        for tap in self.student_taps:
            student, teacher = student_shapes[tap], teacher_shapes[tap]
            if len(student) != 4 or len(teacher) != 4:
                raise ConfigError(f"KD-SVD needs 2-d feature maps; '{tap}' has shapes {tuple(student)} and "
                                  f"{tuple(teacher)}. Pick spatial stages in kd.terms.kdsvd.stages")
            if student[1] != teacher[1]:
                raise ConfigError(f"KD-SVD needs equal student and teacher channel counts at each stage (its "
                                  f"relations are indexed by channel); '{tap}' has {student[1]} vs {teacher[1]}. "
                                  f"Use a same-width pair (e.g. resnet32x4 -> resnet8x4) or another method")
            if min(teacher[2] * teacher[3], teacher[1]) < self.k:
                raise ConfigError(f"'{tap}' of the teacher has fewer than k={self.k} singular vectors; lower "
                                  f"kd.terms.kdsvd.k")

    def forward(self, batch: DistillBatch):
        self.check_bound()
        total, previous = 0.0, None
        for tap in self.student_taps:
            with torch.no_grad():
                teacher_vectors, teacher_values = top_right_singular(batch.teacher_features[tap].float(), self.k)
            student_vectors, _ = top_right_singular(batch.student_features[tap].float(),
                                                    self.k + EXTRA_STUDENT_VECTORS)
            student_vectors = align_to(student_vectors, teacher_vectors)
            scale = teacher_values.unsqueeze(1)
            current = (student_vectors * scale, teacher_vectors * scale)
            if previous is not None:
                difference = (channel_relations(current[0], previous[0])
                              - channel_relations(current[1], previous[1])).pow(2)
                difference = torch.where(torch.isfinite(difference), difference, torch.zeros_like(difference))
                total = total + difference.sum() / difference.shape[0]
            previous = current
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}, k={self.k}"
