"""Probabilistic knowledge transfer: Passalis & Tefas, ECCV 2018. Cosine similarities of L2-normalised
embeddings, mapped to [0, 1] by (s + 1) / 2 and normalised per row into conditional probabilities;
loss = mean over all B x B entries of p_t log((p_t + eps) / (p_s + eps)) (RepDistiller's form)."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm


def conditional_probabilities(embedding, eps: float):
    unit = F.normalize(embedding.flatten(1), dim=1, eps=eps)
    similarity = (unit @ unit.t() + 1) / 2
    return similarity / similarity.sum(dim=1, keepdim=True)


class PKTTerm(DistillTerm):
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)

    def __init__(self, weight: float = 30000.0, eps: float = 1e-7) -> None:
        super().__init__(weight)
        self.eps = float(eps)

    def forward(self, batch: DistillBatch):
        student = conditional_probabilities(batch.student_features["embedding"].float(), self.eps)
        teacher = conditional_probabilities(batch.teacher_features["embedding"].float(), self.eps)
        return (teacher * ((teacher + self.eps) / (student + self.eps)).log()).mean()
