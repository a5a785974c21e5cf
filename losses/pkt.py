"""Probabilistic knowledge transfer: Passalis & Tefas, ECCV 2018 (RepDistiller's PKT), on the embeddings.
Cosine similarities of L2-normalised embeddings, mapped to [0, 1] by (s + 1) / 2 and normalised per row
into conditional probabilities p_j|i; loss = KL(teacher || student) = sum_j p_t log((p_t + eps) / (p_s + eps)),
as RepDistiller averaged over all B x B entries (i.e. the per-row KL averaged over i, divided by B once
more): its beta 30000 was tuned for that scale. Embedding widths may differ."""
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm


def conditional_probabilities(embedding: torch.Tensor, eps: float) -> torch.Tensor:
    unit = F.normalize(embedding.flatten(1), dim=1, eps=eps)
    similarity = (unit @ unit.t() + 1) / 2
    return similarity / similarity.sum(dim=1, keepdim=True)


class PKTTerm(DistillTerm):
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)

    def __init__(self, weight: float = 30000.0, eps: float = 1e-7) -> None:
        super().__init__(weight)
        self.eps = float(eps)
        if not self.eps > 0:
            raise ConfigError(f"kd.terms.pkt.eps must be > 0, got {eps}; use 1e-7 (RepDistiller's)")

    def forward(self, batch: DistillBatch):
        student = conditional_probabilities(batch.student_features["embedding"].float(), self.eps)
        teacher = conditional_probabilities(batch.teacher_features["embedding"].float(), self.eps)
        return (teacher * ((teacher + self.eps) / (student + self.eps)).log()).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, eps={self.eps}"
