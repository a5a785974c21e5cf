"""Logit regression (Ba & Caruana 2014, "Do Deep Nets Really Need to be Deep?"; the semiparametric KD
code's KDMSELoss): mean over all B*K entries of (z - v)^2 on teacher logits (`scale: logp`), or of
(z - softmax(v))^2 on teacher probabilities (`scale: p`)."""
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm

SCALES = ("logp", "p")


def check_scale(scale: str, key: str) -> str:
    if scale not in SCALES:
        raise ConfigError(f"{key} must be one of {list(SCALES)}, got '{scale}'")
    return scale


class KDMSETerm(DistillTerm):
    def __init__(self, weight: float = 1.0, scale: str = "logp") -> None:
        super().__init__(weight)
        self.scale = check_scale(scale, "kd.terms.<name>.scale")

    def forward(self, batch: DistillBatch):
        teacher = batch.teacher_logits.float()
        target = teacher if self.scale == "logp" else teacher.softmax(dim=1)
        return F.mse_loss(batch.student_logits.float(), target)
