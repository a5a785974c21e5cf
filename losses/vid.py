"""Variational information distillation: Ahn et al., CVPR 2019. Per stage a regressor predicts the mean of
a Gaussian over the teacher's feature from the student's, with a learned per-channel variance
softplus(s) + eps; loss = mean of 0.5 ((mu - t)^2 / var + log var), summed over stages."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import match_spatial, stage_taps


class VIDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, stages=(-3, -2, -1), init_pred_var: float = 5.0, eps: float = 1e-5):
        super().__init__(weight)
        self.student_taps = self.teacher_taps = stage_taps("stage", stages)
        self.init_pred_var, self.eps = float(init_pred_var), float(eps)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.regressors, self.log_scales = nn.ModuleList(), nn.ParameterList()
        for tap in self.student_taps:
            s_c, t_c = student_shapes[tap][1], teacher_shapes[tap][1]
            conv = nn.Conv2d if len(student_shapes[tap]) == 4 else nn.Conv1d
            self.regressors.append(nn.Sequential(conv(s_c, t_c, 1), nn.ReLU(), conv(t_c, t_c, 1), nn.ReLU(),
                                                 conv(t_c, t_c, 1)))
            # softplus(log_scale) + eps == init_pred_var at the start
            start = math.log(math.expm1(self.init_pred_var - self.eps))
            self.log_scales.append(nn.Parameter(torch.full((t_c,), start)))

    def forward(self, batch: DistillBatch):
        total = 0.0
        for tap, regressor, log_scale in zip(self.student_taps, self.regressors, self.log_scales):
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            mean = regressor(student)
            variance = (F.softplus(log_scale) + self.eps).view(1, -1, *[1] * (teacher.dim() - 2))
            total = total + (0.5 * ((mean - teacher) ** 2 / variance + variance.log())).mean()
        return total
