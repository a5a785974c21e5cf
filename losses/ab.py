"""Activation boundaries: Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries Formed
by Hidden Neurons", AAAI 2019. On pre-activation features, a 1x1-conv + BN connector maps the student to the
teacher's channels; the alternative (hinge-like) L2 loss with margin m penalises a student neuron on the
wrong side of its activation boundary:
  (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0], summed, divided by the batch size,
weighted 2^(i - n + 1) for the i-th of n stages and scaled by 3/1000 as in RepDistiller's ABLoss.
RepDistiller uses AB only to pre-train the student's features with the connectors (30 epochs), then
trains with CE alone: cfg/kd/ab.yaml does the same with a pre-training stage."""
import torch
from torch import nn

from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import conv_bn_connector, match_spatial, stage_taps


class ABTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, stages=(-3, -2, -1), margin: float = 1.0) -> None:
        super().__init__(weight)
        self.student_taps = self.teacher_taps = stage_taps("preact", stages)
        self.margin = float(margin)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.connectors = nn.ModuleList()
        for tap in self.student_taps:
            self.connectors.append(conv_bn_connector(student_shapes[tap], teacher_shapes[tap], "AB"))

    def forward(self, batch: DistillBatch):
        count = len(self.student_taps)
        total = 0.0
        for i, (tap, connector) in enumerate(zip(self.student_taps, self.connectors)):
            student, teacher = match_spatial(batch.student_features[tap].float(), batch.teacher_features[tap].float())
            source, m = connector(student), self.margin
            loss = ((source + m) ** 2 * ((source > -m) & (teacher <= 0)).float()
                    + (source - m) ** 2 * ((source <= m) & (teacher > 0)).float()).sum()
            total = total + 2.0 ** (i - count + 1) * loss / source.shape[0] / 1000 * 3
        return total
