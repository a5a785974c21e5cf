"""Variational information distillation: Ahn et al., CVPR 2019 (RepDistiller's distiller_zoo/VID.py
VIDLoss). Per stage pair a regressor mu (1x1 conv - ReLU - 1x1 conv - ReLU - 1x1 conv, without bias, to the
teacher's channels, its hidden width the teacher's channels as VIDLoss(s, t, t)) predicts the mean of a
Gaussian over the teacher's feature from the student's, with a learned per-channel variance
var = softplus(log_scale) + eps, started at `init_pred_var`; loss = mean over batch, channels and positions of
0.5 ((mu - t)^2 / var + log var) (the negative log-likelihood without its constant), summed over stages.
Spatial sizes are matched by average-pooling the larger map to the smaller (RepDistiller's rule)."""
import math

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.stagewise import StagewiseTerm
from losses.base import DistillBatch
from losses.feature_utils import match_spatial


class VIDTerm(StagewiseTerm):
    def __init__(self, weight: float = 1.0, stages=None, init_pred_var: float = 5.0, eps: float = 1e-5) -> None:
        super().__init__(weight, stages, "kd.terms.vid.stages")
        self.init_pred_var, self.eps = float(init_pred_var), float(eps)
        if not self.eps > 0 or not self.init_pred_var > self.eps:
            raise ConfigError(f"kd.terms.vid needs eps > 0 and init_pred_var > eps, got eps={eps}, "
                              f"init_pred_var={init_pred_var}; use 1e-5 and 5.0 (RepDistiller's)")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
        self.regressors, self.log_scales = nn.ModuleList(), nn.ParameterList()
        for tap in self.student_taps:
            s_c, t_c = student_shapes[tap][1], teacher_shapes[tap][1]
            conv = {4: nn.Conv2d, 3: nn.Conv1d}.get(len(student_shapes[tap]))
            if conv is None:
                raise ConfigError(f"VID regresses feature maps; '{tap}' has shape {tuple(student_shapes[tap])}. "
                                  f"Pick spatial stages in kd.terms.vid.stages")
            self.regressors.append(nn.Sequential(conv(s_c, t_c, 1, bias=False), nn.ReLU(),
                                                 conv(t_c, t_c, 1, bias=False), nn.ReLU(),
                                                 conv(t_c, t_c, 1, bias=False)))
            # inverse softplus, so the variance starts at init_pred_var
            start = math.log(math.expm1(self.init_pred_var - self.eps))
            self.log_scales.append(nn.Parameter(torch.full((t_c,), start)))

    def forward(self, batch: DistillBatch):
        self.check_bound()
        total = 0.0
        for tap, regressor, log_scale in zip(self.student_taps, self.regressors, self.log_scales):
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            mean = regressor(student)
            variance = (F.softplus(log_scale.float()) + self.eps).view(1, -1, *[1] * (teacher.dim() - 2))
            total = total + (0.5 * ((mean - teacher) ** 2 / variance + variance.log())).mean()
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}, init_pred_var={self.init_pred_var}, eps={self.eps}"
