"""Cross-entropy on the labels: a term like any other, so its weight has a name. Under mixing augmentations
(mixup, cutmix) the labels are soft (`batch.soft_targets`), the mixing weights over the components' labels.
`student_input` picks what it scores: the student's logits (default) or a tap holding logits, e.g. "class_head",
the class-token head of a distilled DeiT (losses/deit.py)."""
import torch.nn.functional as F

from losses.base import LOGITS, DistillBatch, DistillTerm, hooked_taps, read_input


class CrossEntropyTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, label_smoothing: float = 0.0, student_input: str = LOGITS) -> None:
        super().__init__(weight)
        self.label_smoothing = float(label_smoothing)
        self.student_input = student_input
        self.student_taps = hooked_taps(student_input)

    def forward(self, batch: DistillBatch):
        targets = batch.targets if batch.soft_targets is None else batch.soft_targets
        logits = read_input(batch, self.student_input, "student")
        return F.cross_entropy(logits, targets, label_smoothing=self.label_smoothing)
