"""Activation boundaries: Heo et al., "Knowledge Transfer via Distillation of Activation Boundaries Formed
by Hidden Neurons", AAAI 2019. On pre-activation features, a connector maps the student to the teacher's
feature (RepDistiller models/util.py Connector: the identity where channels and size already match, else its
ConvReg without ReLU: a stride-2 3x3 conv, a stride-2 transposed conv or a 1x1 conv, then BatchNorm); the
alternative (hinge-like) L2 loss with margin m penalises a student neuron on the wrong side of its boundary:
  (s + m)^2 [s > -m and t <= 0] + (s - m)^2 [s <= m and t > 0], summed, divided by the batch size,
weighted 2^(i - n + 1) for the i-th of n stages and scaled by 3/1000 as in RepDistiller's ABLoss.
Stages: every stage but the stem by default (`stages: null`, RepDistiller's feat[1:-1] in train_student.py).
RepDistiller uses AB only to pre-train the student's features with the connectors (30 epochs), then trains
with CE alone: cfg/kd/ab.yaml does the same with a pre-training stage."""
from torch import nn

from losses.stagewise import StagewiseTerm
from losses.base import DistillBatch
from losses.feature_utils import resampling_connector


class ABTerm(StagewiseTerm):
    tap_kind = "preact"

    def __init__(self, weight: float = 1.0, stages=None, margin: float = 1.0) -> None:
        super().__init__(weight, stages, "kd.terms.ab.stages")
        self.margin = float(margin)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
        self.connectors = nn.ModuleList(resampling_connector(student_shapes[tap], teacher_shapes[tap], "AB")
                                        for tap in self.student_taps)

    def forward(self, batch: DistillBatch):
        self.check_bound()
        count, m = len(self.student_taps), self.margin
        total = 0.0
        for i, (tap, connector) in enumerate(zip(self.student_taps, self.connectors)):
            source, teacher = connector(batch.student_features[tap].float()), batch.teacher_features[tap].float()
            loss = ((source + m) ** 2 * ((source > -m) & (teacher <= 0)).float()
                    + (source - m) ** 2 * ((source <= m) & (teacher > 0)).float()).sum()
            total = total + 2.0 ** (i - count + 1) * loss / source.shape[0] / 1000 * 3
        return total

    def extra_repr(self) -> str:
        return f"weight={self.weight}, taps={self.student_taps}, margin={self.margin}"
