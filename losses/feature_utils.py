"""Shared helpers for feature terms: matching spatial sizes, and student-to-teacher regressors."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError


def stage_taps(kind: str, stages: Sequence[int]) -> tuple[str, ...]:
    if not stages:
        raise ConfigError(f"a feature term needs at least one stage; got {list(stages)}")
    return tuple(f"{kind}:{int(i)}" for i in stages)


def pool_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if x.dim() == 3:
        return F.adaptive_avg_pool1d(x, size[0])
    if x.dim() == 4:
        return F.adaptive_avg_pool2d(x, tuple(size))
    return x


def match_spatial(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the larger feature map to the smaller one's size (RepDistiller's rule)."""
    if student.dim() < 3 or student.shape[2:] == teacher.shape[2:]:
        return student, teacher
    if student.shape[2] > teacher.shape[2]:
        return pool_to(student, teacher.shape[2:]), teacher
    return student, pool_to(teacher, student.shape[2:])


class Regressor(nn.Module):
    """Maps a student feature to the teacher feature's shape (FitNet's hint regressor, RepDistiller's
    ConvReg): a stride-2 3x3 conv when the student map is twice the size, a stride-2 transposed conv when
    it is half, a (1 + dH) x (1 + dW) conv when it is larger otherwise, then BatchNorm (+ ReLU).
    1-D maps use the Conv1d analogues; vectors a Linear layer."""

    def __init__(self, student_shape: torch.Size, teacher_shape: torch.Size, relu: bool = True) -> None:
        super().__init__()
        dims = len(student_shape)
        if dims != len(teacher_shape):
            raise ConfigError(f"cannot regress a {dims - 1}-d student feature onto a {len(teacher_shape) - 1}-d "
                              f"teacher feature; pick stages of the same kind")
        s_c, t_c = student_shape[1], teacher_shape[1]
        if dims == 2:
            layers = [nn.Linear(s_c, t_c), nn.BatchNorm1d(t_c)]
        else:
            conv, transposed, norm = ((nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d) if dims == 3
                                      else (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d))
            s_size, t_size = student_shape[2:], teacher_shape[2:]
            if all(s == 2 * t for s, t in zip(s_size, t_size)):
                first = conv(s_c, t_c, 3, stride=2, padding=1)
            elif all(2 * s == t for s, t in zip(s_size, t_size)):
                first = transposed(s_c, t_c, 4, stride=2, padding=1)
            elif all(s >= t for s, t in zip(s_size, t_size)):
                kernel = tuple(1 + s - t for s, t in zip(s_size, t_size))
                first = conv(s_c, t_c, kernel if dims == 4 else kernel[0])
            else:
                raise ConfigError(f"no regressor from a {tuple(s_size)} student map to a {tuple(t_size)} teacher "
                                  f"map; choose a deeper student stage or a shallower teacher stage")
            layers = [first, norm(t_c)]
        if relu:
            layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def check_feature_maps(student_shape, teacher_shape, method: str) -> None:
    if len(student_shape) not in (3, 4) or len(teacher_shape) != len(student_shape):
        raise ConfigError(f"{method} connects 1-d or 2-d feature maps of the same kind; got shapes "
                          f"{tuple(student_shape)} (student) and {tuple(teacher_shape)} (teacher). Pick "
                          f"spatial stages, or a method for vector features (e.g. kd=rkd)")


def conv_bn_connector(student_shape, teacher_shape, method: str) -> nn.Module:
    """A 1x1 convolution (no bias) + BatchNorm from the student's channels to the teacher's, for 1-d or 2-d
    feature maps: OFD's connector (mdistiller distillers/OFD.py ConnectorConvBN)."""
    check_feature_maps(student_shape, teacher_shape, method)
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if len(student_shape) == 3 else (nn.Conv2d, nn.BatchNorm2d)
    return nn.Sequential(conv(student_shape[1], teacher_shape[1], 1, bias=False), norm(teacher_shape[1]))


def resampling_connector(student_shape, teacher_shape, method: str) -> nn.Module:
    """AB's connector (RepDistiller models/util.py Connector): the identity where channels and size already
    match, else the Regressor without ReLU (RepDistiller's ConvReg(use_relu=False)): a stride-2 3x3 conv where
    the student map is twice the teacher's, a stride-2 transposed conv where it is half, else a
    (1 + dH) x (1 + dW) conv (1x1 at equal sizes), then BatchNorm."""
    check_feature_maps(student_shape, teacher_shape, method)
    if tuple(student_shape[1:]) == tuple(teacher_shape[1:]):
        return nn.Identity()
    return Regressor(student_shape, teacher_shape, relu=False)
