"""Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":
T^2 * KL(softmax(v/T) || softmax(z/T)), summed over classes and averaged over the batch ("batchmean").
The T^2 keeps the soft-target gradients on the scale of the hard-label ones as T changes."""
import torch
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(v/T) || softmax(z/T)), batch-mean; 0 for an empty batch."""
    if len(student_logits) == 0:
        return student_logits.sum() * 0.0
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature * temperature


class KDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(weight)
        self.temperature = float(temperature)

    def forward(self, batch: DistillBatch):
        return soft_target_kl(batch.student_logits, batch.teacher_logits, self.temperature)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"
