"""SRD ("simple recipe distillation"): Miles and Mikolajczyk, "Understanding the Role of the Projector in
Knowledge Distillation", AAAI 2024 (roymiles/Simple-Recipe-Distillation imagenet/torchdistill/losses/single.py),
as torchdistill computes it (torchdistill/losses/mid_level.py SRDLoss, models/wrapper.py SRDModelWrapper; the
official config configs/official/ilsvrc2012/roymiles/aaai2024/srd-resnet18_from_resnet34.yaml).

Both models' last-stage maps are averaged over their positions (SRDModelWrapper: `z.mean(-1).mean(-1)`). The
student's vector passes a linear projector (nn.Linear, with bias, student width -> teacher width) and a
BatchNorm1d without affine parameters (eps 1e-4); the teacher's passes the same kind of BatchNorm1d. Then

    L = 2 log( sum_{b,d} |s_bd - t_bd|^exponent ) + KL(softmax(z_t / T) || softmax(z_s / T)),

the sum running over the whole batch, the KL batch-mean and without T^2 (torchdistill's KLDivLoss 'batchmean';
the config's exponent 4, T 1).

BatchNorm in train mode: torchdistill never calls eval() on the teacher (examples/torchvision/
image_classification.py puts only the student in train mode and never the teacher in eval mode), so the teacher
wrapper's BatchNorm1d standardises with the batch's own statistics, as the student's does; its running statistics,
which it updates, are never read in training. Here the teacher side is that standardisation computed in the term
(`F.batch_norm` with batch statistics, no running statistics kept): the teacher itself stays frozen and in eval
mode, and nothing of it moves."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.kd import soft_target_kl
from losses.stagewise import one_stage_tap

SRD_NORM_EPS = 1e-4  # the official config's norm_kwargs eps


def pooled(features: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) -> (B, C): the mean over positions (a (B, C) vector stays as it is)."""
    return features.flatten(2).mean(dim=2) if features.dim() > 2 else features


def batch_standardized(vectors: torch.Tensor, eps: float = SRD_NORM_EPS) -> torch.Tensor:
    """BatchNorm1d(affine=False) in train mode: each dimension standardised by its batch mean and biased variance."""
    return F.batch_norm(vectors, None, None, training=True, eps=eps)


class SRDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, exponent: float = 4.0, temperature: float = 1.0, stage: int = -1) -> None:
        super().__init__(weight)
        if isinstance(exponent, bool) or not isinstance(exponent, (int, float)) or not exponent > 0:
            raise ConfigError(f"kd.terms.srd.exponent must be a number > 0, got {exponent!r}; torchdistill's SRD "
                              f"config uses exponent=4")
        self.exponent, self.temperature = float(exponent), float(temperature)
        self.tap = one_stage_tap(stage, "kd.terms.srd.stage", "stage=-1 (torchdistill's layer4)")
        self.student_taps = self.teacher_taps = (self.tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        student_width, teacher_width = student_shapes[self.tap][1], teacher_shapes[self.tap][1]
        self.projector = nn.Sequential(nn.Linear(student_width, teacher_width),
                                       nn.BatchNorm1d(teacher_width, eps=SRD_NORM_EPS, affine=False))

    def forward(self, batch: DistillBatch):
        student = self.projector(pooled(batch.student_features[self.tap].float()))
        teacher = batch_standardized(pooled(batch.teacher_features[self.tap].float()))
        feature = torch.log((student - teacher).abs().pow(self.exponent).sum())
        t = self.temperature
        return 2 * feature + soft_target_kl(batch.student_logits, batch.teacher_logits, t) / (t * t)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, exponent={self.exponent}, temperature={self.temperature}, tap={self.tap}"
