"""Similarity-preserving KD: Tung & Mori, ICCV 2019. With Q the (B, C*H*W) flattened features,
G = Q Q^T and each row of G L2-normalised (the paper's eq. 2; RepDistiller's `Similarity` normalises G's
rows too, not Q's); loss = ||G_s - G_t||_F^2 / B^2, on the last stage (RepDistiller's feat[-2]).
The B x B matrices compare across architectures whatever the feature shapes."""
import torch
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm
from losses.stagewise import one_stage_tap


def similarity(feature: torch.Tensor) -> torch.Tensor:
    flat = feature.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


class SPTerm(DistillTerm):
    def __init__(self, weight: float = 3000.0, stage: int = -1) -> None:
        super().__init__(weight)
        self.tap = one_stage_tap(stage, "kd.terms.sp.stage", "stage=-1 (the last stage, RepDistiller's feat[-2])")
        self.student_taps = self.teacher_taps = (self.tap,)

    def forward(self, batch: DistillBatch):
        student = similarity(batch.student_features[self.tap].float())
        teacher = similarity(batch.teacher_features[self.tap].float())
        return (student - teacher).pow(2).sum() / student.shape[0] ** 2

    def extra_repr(self) -> str:
        return f"weight={self.weight}, tap={self.tap}"
