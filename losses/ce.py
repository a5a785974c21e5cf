"""Cross-entropy on the labels: a term like any other, so its weight has a name. Under mixing augmentations
(mixup, cutmix) the labels are soft (`batch.soft_targets`), the mixing weights over the components' labels."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm


class CrossEntropyTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__(weight)
        self.label_smoothing = float(label_smoothing)

    def forward(self, batch: DistillBatch):
        targets = batch.targets if batch.soft_targets is None else batch.soft_targets
        return F.cross_entropy(batch.student_logits, targets, label_smoothing=self.label_smoothing)
