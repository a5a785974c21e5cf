"""DKD: Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022.

KD splits into target-class KD (TCKD: KL between the binary [p_target, 1 - p_target] of teacher and
student) and non-target-class KD (NCKD: KL between the distributions over the non-target classes alone);
DKD weights them separately (alpha = weight_tckd, beta = weight_nckd), both at temperature T and times
T^2, batch-mean, and ramps the term in linearly over `warmup_epochs`.

Warm-up: mdistiller's linear ramp (`warmup_ramp`: 1/20 in the first epoch, 1 from the 20th on).

`standardize=true` z-scores both sides' logits per row before the temperature (logit standardization, Sun et al.,
CVPR 2024; sunshangquan/logit-standardization-KD mdistiller/distillers/DKD.py `dkd_loss(..., logit_stand)`). That
anchor's `--logit-stand --base-temp T --kd-weight W` multiplies alpha and beta by W and sets the temperature to T
(tools/train.py); here the term's `weight` carries W, which is the same product (the warm-up scales both)."""
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm, warmup_ramp
from losses.standardize import standardize_logits

MASK = 1000.0  # subtracted from the target logit so that it vanishes from the non-target softmax


class DKDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, weight_tckd: float = 1.0, weight_nckd: float = 8.0,
                 temperature: float = 4.0, warmup_epochs: int = 20, standardize: bool = False) -> None:
        super().__init__(weight)
        if not (weight_tckd >= 0 and weight_nckd >= 0 and warmup_epochs >= 0):
            raise ConfigError("kd.terms.dkd needs weight_tckd >= 0, weight_nckd >= 0 and warmup_epochs >= 0 "
                              f"(got {weight_tckd}, {weight_nckd}, {warmup_epochs}); mdistiller uses 1, 8, 20")
        self.weight_tckd, self.weight_nckd = float(weight_tckd), float(weight_nckd)
        self.temperature = float(temperature)
        self.warmup_epochs = int(warmup_epochs)
        self.standardize = bool(standardize)

    def forward(self, batch: DistillBatch):
        t = self.temperature
        student, teacher = batch.student_logits.float(), batch.teacher_logits.float()
        if self.standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        student, teacher = student / t, teacher / t
        target = F.one_hot(batch.targets, student.shape[1]).bool()
        p_student, p_teacher = student.softmax(dim=1), teacher.softmax(dim=1)

        def binary(p: torch.Tensor) -> torch.Tensor:
            target_mass = p[target].unsqueeze(1)
            return torch.cat([target_mass, 1 - target_mass], dim=1)

        tckd = F.kl_div(binary(p_student).clamp_min(1e-12).log(), binary(p_teacher), reduction="batchmean")
        nckd = F.kl_div(F.log_softmax(student - MASK * target, dim=1), F.softmax(teacher - MASK * target, dim=1),
                        reduction="batchmean")
        return warmup_ramp(batch.epoch, self.warmup_epochs) * t * t * (self.weight_tckd * tckd + self.weight_nckd * nckd)
