"""OFD: Heo et al., "A Comprehensive Overhaul of Feature Distillation", ICCV 2019. Distils pre-ReLU
features: the teacher's are clipped from below at a per-channel margin m = E[x | x < 0] of its pre-activation,
computed from the BatchNorm before it (x ~ N(beta, gamma^2), sigma = |gamma| as mdistiller takes it):
  m = -sigma exp(-(beta/sigma)^2 / 2) / sqrt(2 pi) / Phi(-beta/sigma) + beta   if Phi(-beta/sigma) > 0.001,
  m = -3 sigma otherwise;
a 1x1-conv + BN connector maps the student's pre-ReLU feature to the teacher's channels; the partial L2
counts (s - t)^2 only where s > t or t > 0 (a student response below a negative teacher response is fine);
stage i of n weighs 2^-(n - i - 1); sums are divided by the batch size (mdistiller weight 1e-3).

As mdistiller runs it (mdistiller/distillers/OFD.py):
- stages: `preact_feats[1:]` of both models, aligned from the deep end: `stages: null` (every stage but the
  stem, settled from the two architectures), the default;
- the teacher: OFD.train puts every child, the teacher included, in train mode, so the teacher's BatchNorm
  normalises each batch with its own statistics, and its running statistics drift (they are read by nothing in
  mdistiller's distillation; only the student is evaluated). The project's teacher stays in eval mode by default
  (running statistics); `teacher.batchnorm=batch` runs the anchor's batch statistics without moving the running
  statistics or any teacher weight (models/teachers.py). The margins are read from the teacher's BatchNorm
  parameters, which neither mode changes."""
import math

import torch
from torch import nn

from losses.base import DistillBatch
from losses.feature_utils import conv_bn_connector, match_spatial
from losses.stagewise import StagewiseTerm
from models.features import preact_batchnorms


def margin_from_batchnorm(norm: nn.Module) -> torch.Tensor:
    std, mean = norm.weight.detach().float().abs(), norm.bias.detach().float()
    below = torch.special.ndtr(-mean / std)
    gaussian = -std * torch.exp(-(mean / std) ** 2 / 2) / math.sqrt(2 * math.pi) / below.clamp_min(1e-12) + mean
    return torch.where(below > 0.001, gaussian, -3 * std)


class OFDTerm(StagewiseTerm):
    tap_kind = "preact"

    def __init__(self, weight: float = 1e-3, stages=None) -> None:
        super().__init__(weight, stages, "kd.terms.ofd.stages")

    def bind_teacher(self, teacher: nn.Module, example_input: torch.Tensor) -> None:
        self.check_bound()
        norms = preact_batchnorms(teacher, self.teacher_taps, example_input)
        for i, tap in enumerate(self.teacher_taps):
            self.register_buffer(f"margin{i}", margin_from_batchnorm(norms[tap]))

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
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
