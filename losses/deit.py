"""DeiT's distillation through a distillation token (Touvron et al., ICML 2021; facebookresearch/deit
`losses.py` DistillationLoss).

The student is a ViT with a class token and a distillation token, each with its own linear head (timm's
distilled DeiTs, e.g. timm.deit_tiny_distilled_patch16_224). Its logits, what every other part of a run reads
(accuracy, fidelity, checkpoints), are the mean of the two heads, as DeiT predicts at test time; the two heads
reach the objective as feature taps, "class_head" and "distillation_head" (models/features.py), so the
training step and `DistillBatch` stay as for any other method. DeiT's loss is two terms here:

    (1 - alpha) * base_criterion(class head, labels)     kd.terms.ce, CrossEntropyTerm(student_input=class_head)
  + alpha * distillation(distillation head, teacher)     kd.terms.deit (this term)

with DeiT's `--distillation-alpha` 0.5 as the two weights. `kind`:
  hard: cross-entropy of the distillation head against the teacher's argmax (DeiT's hard-label distillation);
  soft: KL(softmax(t / tau) || softmax(s / tau)) * tau^2, summed and divided by the number of logits (batch x
        classes) as DeiT's code does ("the legacy PyTorch behaviour", deit issue 61), not by the batch. DeiT's
        code defaults to tau 1.0 (`--distillation-tau`), the defaults here; the paper's soft-distillation runs
        use tau 3.0 and lambda 0.1 (kd.terms.deit.temperature=3 and weights 0.9 / 0.1).
DeiT's base criterion is SoftTargetCrossEntropy under its mixup/cutmix with label smoothing 0.1; the CE term
reads the mixed labels (batch.soft_targets) under augment=mixup/cutmix and takes label_smoothing.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm

DISTILLATION_HEAD = "distillation_head"
KINDS = ("hard", "soft")


class DeiTDistillationTerm(DistillTerm):
    student_taps = (DISTILLATION_HEAD,)

    def __init__(self, weight: float = 0.5, kind: str = "hard", temperature: float = 1.0) -> None:
        super().__init__(weight)
        if kind not in KINDS:
            raise ConfigError(f"kd.terms.deit.kind={kind!r} is not a DeiT distillation; use one of {list(KINDS)}")
        self.kind = kind
        self.temperature = float(temperature)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        student = batch.student_features[DISTILLATION_HEAD].float()
        teacher = batch.teacher_logits.float()
        if self.kind == "hard":
            return F.cross_entropy(student, teacher.argmax(dim=1))
        tau = self.temperature
        divergence = F.kl_div(F.log_softmax(student / tau, dim=1), F.log_softmax(teacher / tau, dim=1),
                              reduction="sum", log_target=True)
        return divergence * (tau * tau) / student.numel()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, kind={self.kind}, temperature={self.temperature}"
