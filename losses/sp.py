"""Similarity-preserving KD: Tung & Mori, ICCV 2019. G = F F^T over the batch (F flattened features),
each row L2-normalised; loss = ||G_s - G_t||_F^2 / B^2 on the last stage (RepDistiller's feat[-2])."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm


def similarity(feature):
    flat = feature.flatten(1)
    return F.normalize(flat @ flat.t(), dim=1)


class SPTerm(DistillTerm):
    def __init__(self, weight: float = 3000.0, stage: int = -1) -> None:
        super().__init__(weight)
        self.tap = f"stage:{int(stage)}"
        self.student_taps = self.teacher_taps = (self.tap,)

    def forward(self, batch: DistillBatch):
        student = similarity(batch.student_features[self.tap].float())
        teacher = similarity(batch.teacher_features[self.tap].float())
        return (student - teacher).pow(2).sum() / student.shape[0] ** 2
