"""ICKD: Liu et al., "Exploring Inter-Channel Correlation for Diversity-Preserved Knowledge Distillation",
ICCV 2021 (ADLab-AutoDrive/ICKD ImageNet/torchdistill/losses/single.py), as torchdistill computes it
(torchdistill/losses/mid_level.py ChSimLoss, models/wrapper.py Student4ICKD and ChannelSimilarityEmbed).

Each example's feature map F (C x positions) gives its inter-channel correlation G = F F^T (C x C), each row
L2-normalised (torch's `normalize`, eps 1e-12). The student's map first passes an embedding, a 3x3 convolution
(stride 1, padding 1, no bias) from its channels to the teacher's, then BatchNorm (ChannelSimilarityEmbed; the
sample config sets out_channels to the teacher's 512); the teacher's map is used as it is. The loss sums the
squared differences of the normalised matrices over all B x C x C entries and divides by C B^2:

    L = sum_b sum_ij (G^s_b / |rows| - G^t_b / |rows|)_ij^2 / (C B^2).

G sums over positions, so the two maps need not share a spatial size (they do in torchdistill's ResNet-34 ->
ResNet-18 pair). The division by B^2 (not B) is the anchor's; its sample config weighs the term 500."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import check_feature_maps
from losses.stagewise import one_stage_tap


def channel_correlation(features: torch.Tensor) -> torch.Tensor:
    """(B, C, ...) -> (B, C, C): each example's channel Gram matrix over positions, rows L2-normalised."""
    flat = features.flatten(2)
    return F.normalize(torch.bmm(flat, flat.transpose(1, 2)), dim=2)


def channel_embedding(student_shape, teacher_shape) -> nn.Module:
    """ChannelSimilarityEmbed: 3x3 conv (stride 1, padding 1, no bias) to the teacher's channels, then BatchNorm."""
    check_feature_maps(student_shape, teacher_shape, "ICKD")
    conv, norm = (nn.Conv1d, nn.BatchNorm1d) if len(student_shape) == 3 else (nn.Conv2d, nn.BatchNorm2d)
    channels = teacher_shape[1]
    return nn.Sequential(conv(student_shape[1], channels, 3, stride=1, padding=1, bias=False), norm(channels))


class ICKDTerm(DistillTerm):
    def __init__(self, weight: float = 500.0, stage: int = -1) -> None:
        super().__init__(weight)
        self.tap = one_stage_tap(stage, "kd.terms.ickd.stage", "stage=-1 (torchdistill's layer4)")
        self.student_taps = self.teacher_taps = (self.tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.embed = channel_embedding(student_shapes[self.tap], teacher_shapes[self.tap])

    def forward(self, batch: DistillBatch):
        student = channel_correlation(self.embed(batch.student_features[self.tap].float()))
        teacher = channel_correlation(batch.teacher_features[self.tap].float())
        size, channels = student.shape[0], student.shape[1]
        return ((student - teacher) ** 2).sum() / (channels * size * size)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, tap={self.tap}"
