"""OFD: Heo et al., "A Comprehensive Overhaul of Feature Distillation", ICCV 2019. Distils pre-ReLU
features: the teacher's are clipped from below at a per-channel margin m = E[x | x < 0] of its pre-activation,
computed from the BatchNorm before it (x ~ N(beta, gamma^2)):
  m = -gamma exp(-(beta/gamma)^2 / 2) / sqrt(2 pi) / Phi(-beta/gamma) + beta   if Phi(-beta/gamma) > 0.001,
  m = -3 gamma otherwise;
a 1x1-conv + BN connector maps the student's pre-ReLU feature to the teacher's channels; the partial L2
counts (s - t)^2 only where s > t or t > 0 (a student response below a negative teacher response is fine);
stage i of n weighs 2^-(n - i - 1); sums are divided by the batch size (mdistiller weight 1e-3)."""
import math

import torch
from torch import nn

from losses.base import DistillBatch, DistillTerm
from models.features import preact_batchnorms
from losses.feature_utils import conv_bn_connector, match_spatial, stage_taps


def margin_from_batchnorm(norm: nn.Module) -> torch.Tensor:
    std, mean = norm.weight.detach().float(), norm.bias.detach().float()
    below = torch.special.ndtr(-mean / std)
    gaussian = -std * torch.exp(-(mean / std) ** 2 / 2) / math.sqrt(2 * math.pi) / below.clamp_min(1e-12) + mean
    return torch.where(below > 0.001, gaussian, -3 * std)


class OFDTerm(DistillTerm):
    def __init__(self, weight: float = 1e-3, stages=(-3, -2, -1)) -> None:
        super().__init__(weight)
        self.student_taps = self.teacher_taps = stage_taps("preact", stages)

    def bind_teacher(self, teacher: nn.Module, example_input: torch.Tensor) -> None:
        norms = preact_batchnorms(teacher, self.teacher_taps, example_input)
        for i, tap in enumerate(self.teacher_taps):
            self.register_buffer(f"margin{i}", margin_from_batchnorm(norms[tap]))

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.connectors = nn.ModuleList()
        for tap in self.student_taps:
            self.connectors.append(conv_bn_connector(student_shapes[tap], teacher_shapes[tap], "OFD"))

    def forward(self, batch: DistillBatch):
        count, total = len(self.student_taps), 0.0
        for i, (tap, connector) in enumerate(zip(self.student_taps, self.connectors)):
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            source = connector(student)
            margin = getattr(self, f"margin{i}").view(1, -1, *[1] * (teacher.dim() - 2))
            target = torch.max(teacher, margin)
            mask = ((source > target) | (target > 0)).float()
            total = total + ((source - target) ** 2 * mask).sum() / source.shape[0] / 2 ** (count - i - 1)
        return total
