"""Cross-entropy on the hard labels: a term like any other, so its weight has a name."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm


class CrossEntropyTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, batch: DistillBatch):
        return F.cross_entropy(batch.student_logits, batch.targets, label_smoothing=self.label_smoothing)
