"""ReviewKD: Chen et al., "Distilling Knowledge via Knowledge Review", CVPR 2021, as mdistiller's ReviewKD.

Levels, shallow to deep: every student stage but the stem (post-ReLU), then the pooled embedding as a 1x1
map; the teacher gives the same levels pre-ReLU. Attention-based fusion (ABF) reviews them from the deep
end: level i's student feature goes through a 1x1 conv + BN to `mid` channels; except at the deepest level
it is fused with the running residual r (the fused map of level i+1, nearest-resized to level i's size):
    a = sigmoid(conv1x1([x, r])),  x <- x * a[:, 0] + r * a[:, 1];
x is nearest-resized to the teacher's size at level i and becomes the next residual, and a 3x3 conv + BN
maps it to the teacher's channels: the output s_i. The hierarchical context loss (HCL) per level is
    (MSE(s, t) + sum_{l in 4,2,1, l < H} 2^-k MSE(pool_l(s), pool_l(t))) / (1 + sum 2^-k),  k = 1, 2, ...
(mean-reduced MSE, adaptive average pooling to l x l), summed over levels, times mdistiller's linear warm-up.
`mid` = min(512, the student embedding's width), as mdistiller."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.stagewise import StagewiseTerm
from losses.base import DistillBatch, warmup_ramp

MAX_MID_CHANNELS = 512
PYRAMID = (4, 2, 1)


def hierarchical_context_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    total, weight, weights = F.mse_loss(student, teacher), 1.0, 1.0
    for size in PYRAMID:
        if size >= student.shape[2]:
            continue
        weight /= 2
        pool = F.adaptive_avg_pool2d if student.dim() == 4 else F.adaptive_avg_pool1d
        target = (size,) * (student.dim() - 2)
        total = total + weight * F.mse_loss(pool(student, target), pool(teacher, target))
        weights += weight
    return total / weights


class AttentionBasedFusion(nn.Module):
    def __init__(self, dims: int, in_channels: int, mid_channels: int, out_channels: int, fuse: bool) -> None:
        super().__init__()
        conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
        self.reduce = nn.Sequential(conv(in_channels, mid_channels, 1, bias=False), norm(mid_channels))
        self.project = nn.Sequential(conv(mid_channels, out_channels, 3, padding=1, bias=False), norm(out_channels))
        self.attention = nn.Sequential(conv(2 * mid_channels, 2, 1), nn.Sigmoid()) if fuse else None
        for layer in (self.reduce[0], self.project[0]):
            nn.init.kaiming_uniform_(layer.weight, a=1)  # mdistiller's (and the paper code's) init

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None, out_size) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.reduce(x)
        if self.attention is not None:
            residual = F.interpolate(residual, size=x.shape[2:], mode="nearest")
            gates = self.attention(torch.cat([x, residual], dim=1))
            x = x * gates[:, :1] + residual * gates[:, 1:]
        if tuple(x.shape[2:]) != tuple(out_size):
            x = F.interpolate(x, size=tuple(out_size), mode="nearest")
        return self.project(x), x


class ReviewKDTerm(StagewiseTerm):
    def __init__(self, weight: float = 5.0, stages=None, warmup_epochs: int = 20) -> None:
        super().__init__(weight, stages, "kd.terms.reviewkd.stages")
        if int(warmup_epochs) < 0:
            raise ConfigError(f"kd.terms.reviewkd.warmup_epochs must be >= 0, got {warmup_epochs}; mdistiller uses 20")
        self.warmup_epochs = int(warmup_epochs)

    def _set_stages(self, stages) -> None:
        stages = () if stages is None else tuple(stages)
        self.student_taps = (*(f"stage:{i}" for i in stages), "embedding") if stages else ()
        self.teacher_taps = (*(f"preact:{i}" for i in stages), "embedding") if stages else ()

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.check_bound()
        student = [student_shapes[tap] for tap in self.student_taps]
        teacher = [teacher_shapes[tap] for tap in self.teacher_taps]
        dims = len(student[0]) - 2
        for tap, s, t in zip(self.student_taps[:-1], student, teacher):
            if dims not in (1, 2) or len(s) != dims + 2 or len(t) != dims + 2:
                raise ConfigError(f"ReviewKD fuses 1-d or 2-d feature maps; stage '{tap}' has shapes {tuple(s)} "
                                  f"(student) and {tuple(t)} (teacher). Pick spatial stages in "
                                  f"kd.terms.reviewkd.stages")
        self.dims = dims
        self.out_sizes = [tuple(t[2:]) if len(t) > 2 else (1,) * dims for t in teacher]
        mid = min(MAX_MID_CHANNELS, student[-1][1])
        self.fusions = nn.ModuleList(AttentionBasedFusion(dims, s[1], mid, t[1], fuse=i < len(student) - 1)
                                     for i, (s, t) in enumerate(zip(student, teacher)))

    def as_map(self, feature: torch.Tensor) -> torch.Tensor:
        """The pooled embedding (B, D) as a (B, D, 1[, 1]) map."""
        return feature.reshape(*feature.shape[:2], *(1,) * self.dims) if feature.dim() == 2 else feature

    def forward(self, batch: DistillBatch):
        self.check_bound()
        students = [self.as_map(batch.student_features[tap].float()) for tap in self.student_taps]
        teachers = [self.as_map(batch.teacher_features[tap].float()) for tap in self.teacher_taps]
        total, residual = 0.0, None
        for level in reversed(range(len(students))):
            output, residual = self.fusions[level](students[level], residual, self.out_sizes[level])
            total = total + hierarchical_context_loss(output, teachers[level])
        return warmup_ramp(batch.epoch, self.warmup_epochs) * total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}, warmup_epochs={self.warmup_epochs}"
