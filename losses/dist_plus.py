"""DIST+: Huang et al., "DIST+: Knowledge Distillation From a Stronger Adaptive Teacher", TPAMI 2025, as
torchdistill computes it (torchdistill/losses/mid_level.py DISTPlusLoss; sample config
configs/sample/ilsvrc2012/dist_plus/resnet18_from_resnet34.yaml).

DIST's two logit relations (losses/dist.py: inter weight beta, intra weight gamma, both times tau^2) plus two
relations between the student's and the teacher's feature maps at one stage (torchdistill: layer4 of both, no
connector, so the maps must have the same shape):
- channel relation, weight iota: at every example and position, the Pearson correlation of the two maps across
  channels (centred over channels; numerator / (sqrt(product of sums of squares) + eps)), averaged;
- spatial relation, weight kappa: each map summed over channels gives a (B, positions) matrix; 1 - the Pearson
  correlation, across the batch, of each position's column, averaged over positions (DIST's inter-class relation
  on the transposed matrices).

    L = tau^2 (beta inter + gamma intra) + iota channel + kappa spatial.

Channel term's sign (`channel_form`): torchdistill adds the correlation itself (`channel_relation` returns
the mean correlation, not 1 - it), so minimising the loss pushes the channel correlation down, towards -1,
unlike the other three relations. The default, "correlation", is torchdistill's, the code that produced the
published 71.37 (the paper reports 72.39); "distance" adds 1 - the correlation, as the other relations are
written. In torchdistill's DISTPlusLoss `gamma` is the intra-class weight (its docstring says spatial): the code is
followed, so weight_intra is gamma and weight_spatial is kappa."""
from __future__ import annotations

import torch

from errors import ConfigError
from losses.base import DistillBatch
from losses.dist import PEARSON_EPS, DISTTerm, pearson_rows
from losses.stagewise import one_stage_tap

CHANNEL_FORMS = ("correlation", "distance")


def channel_correlation(student: torch.Tensor, teacher: torch.Tensor, eps: float = PEARSON_EPS) -> torch.Tensor:
    """The mean, over examples and positions, of the Pearson correlation across channels (dim 1)."""
    student = student - student.mean(dim=1, keepdim=True)
    teacher = teacher - teacher.mean(dim=1, keepdim=True)
    numerator = (student * teacher).sum(dim=1)
    denominator = torch.sqrt((student ** 2).sum(dim=1) * (teacher ** 2).sum(dim=1))
    return (numerator / (denominator + eps)).mean()


def spatial_distance(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - the mean over positions of the Pearson correlation, across the batch, of the channel-summed maps."""
    student, teacher = student.sum(dim=1).flatten(1), teacher.sum(dim=1).flatten(1)
    return (1 - pearson_rows(student.t(), teacher.t())).mean()


class DISTPlusTerm(DISTTerm):
    def __init__(self, weight: float = 2.0, weight_inter: float = 2.0, weight_intra: float = 2.0,
                 weight_channel: float = 1.0, weight_spatial: float = 1.0, temperature: float = 1.0,
                 stage: int = -1, channel_form: str = "correlation") -> None:
        super().__init__(weight, weight_inter, weight_intra, temperature)
        if not (weight_channel >= 0 and weight_spatial >= 0):
            raise ConfigError(f"kd.terms.dist_plus needs weight_channel >= 0 and weight_spatial >= 0 (got "
                              f"{weight_channel}, {weight_spatial}); torchdistill's sample config uses 1 and 1")
        if channel_form not in CHANNEL_FORMS:
            raise ConfigError(f"kd.terms.dist_plus.channel_form must be one of {list(CHANNEL_FORMS)}, got "
                              f"{channel_form!r}; 'correlation' is torchdistill's")
        self.weight_channel, self.weight_spatial = float(weight_channel), float(weight_spatial)
        self.channel_form = channel_form
        self.tap = one_stage_tap(stage, "kd.terms.dist_plus.stage", "stage=-1 (torchdistill's layer4)")
        self.student_taps = self.teacher_taps = (self.tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        student, teacher = tuple(student_shapes[self.tap][1:]), tuple(teacher_shapes[self.tap][1:])
        if student != teacher or len(student) < 2:
            raise ConfigError(f"DIST+ compares the student's and the teacher's '{self.tap}' maps position by position "
                              f"without a connector, so they need one shape with positions; got {student} (student) "
                              f"and {teacher} (teacher). Pick a stage where they match (e.g. ResNet-34 -> ResNet-18 "
                              f"stage=-1) or kd=dist for the logit relations alone")

    def forward(self, batch: DistillBatch):
        student = batch.student_features[self.tap].float()
        teacher = batch.teacher_features[self.tap].float()
        channel = channel_correlation(student, teacher)
        if self.channel_form == "distance":
            channel = 1 - channel
        return (super().forward(batch) + self.weight_channel * channel
                + self.weight_spatial * spatial_distance(student, teacher))

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, inter={self.weight_inter}, intra={self.weight_intra}, "
                f"channel={self.weight_channel} ({self.channel_form}), spatial={self.weight_spatial}, "
                f"temperature={self.temperature}, tap={self.tap}")
