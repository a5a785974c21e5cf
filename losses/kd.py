"""Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":
T^2 * KL(softmax(v/T) || softmax(z/T)), summed over classes and averaged over the batch ("batchmean").
The T^2 keeps the soft-target gradients on the scale of the hard-label ones as T changes."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm, check_temperature


class KDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, temperature: float = 4.0) -> None:
        super().__init__(weight)
        self.temperature = check_temperature(temperature, "kd.terms.kd.temperature")

    def forward(self, batch: DistillBatch):
        t = self.temperature
        student_log_probs = F.log_softmax(batch.student_logits.float() / t, dim=1)
        teacher_log_probs = F.log_softmax(batch.teacher_logits.float() / t, dim=1)
        kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
        return kl * t * t

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"
