"""Hinton et al. 2015, "Distilling the Knowledge in a Neural Network":
T^2 * KL(softmax(v/T) || softmax(z/T)), summed over classes and averaged over the batch ("batchmean").
The T^2 keeps the soft-target gradients on the scale of the hard-label ones as T changes.

`standardize=true` z-scores both sides' logits per row first (logit standardization, Sun et al., CVPR 2024;
sunshangquan/logit-standardization-KD mdistiller/distillers/KD.py `kd_loss(..., logit_stand)`), see
losses/standardize.py; cfg/kd/lskd.yaml is that anchor's KD+LS recipe (CE 0.1, KD 9, base temperature 2)."""
import torch
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm
from losses.standardize import standardize_logits


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 KL(softmax(v/T) || softmax(z/T)), batch-mean; 0 for an empty batch."""
    if len(student_logits) == 0:
        return student_logits.sum() * 0.0
    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)
    return kl * temperature * temperature


class KDTerm(DistillTerm):
    """`generated_temperature` (null: `temperature`) is the temperature on rows an augmentation generated
    (augment=synthetic), each row's KL times its own T^2, averaged over all rows: gnosis's DistillLoader labels its
    GAN rows at synth_temp, 1.0 by default, and the real rows at temp 4.0, in one soft cross-entropy."""

    def __init__(self, weight: float = 1.0, temperature: float = 4.0, generated_temperature: float | None = None,
                 standardize: bool = False) -> None:
        super().__init__(weight)
        self.temperature = float(temperature)
        self.generated_temperature = None if generated_temperature is None else float(generated_temperature)
        self.standardize = bool(standardize)

    def forward(self, batch: DistillBatch):
        student, teacher = batch.student_logits, batch.teacher_logits
        if self.standardize:
            student, teacher = standardize_logits(student.float()), standardize_logits(teacher.float())
        if self.generated_temperature is None or batch.generated is None or not bool(batch.generated.any()):
            return soft_target_kl(student, teacher, self.temperature)
        generated, total = batch.generated, len(student)
        real = soft_target_kl(student[~generated], teacher[~generated], self.temperature)
        made = soft_target_kl(student[generated], teacher[generated], self.generated_temperature)
        count = int(generated.sum())  # batch means of each part, weighted back to a mean over all rows
        return (real * (total - count) + made * count) / total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}, standardize={self.standardize}"


class TeacherCrossEntropyTerm(DistillTerm):
    """Cross-entropy to the teacher's softened prediction: T^2 * mean over rows of -sum_k softmax(v/T)_k
    log softmax(z/T)_k. It differs from KD's KL by the teacher's entropy, which the student cannot change, so its
    gradient is KD's; its value is the anchors' own where they use cross-entropy: comparative KD's mixup
    (alextxu/ckd train_student.py --loss_fn 0: nn.CrossEntropyLoss to the teacher's softmax at T 1) and gnosis's
    TeacherStudentFwdCrossEntLoss."""

    def __init__(self, weight: float = 1.0, temperature: float = 1.0) -> None:
        super().__init__(weight)
        self.temperature = float(temperature)

    def forward(self, batch: DistillBatch):
        t = self.temperature
        teacher = F.softmax(batch.teacher_logits.float() / t, dim=1)
        return t * t * F.cross_entropy(batch.student_logits.float() / t, teacher)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}"
