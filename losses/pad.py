"""PAD-L2: Zhang et al., "Prime-Aware Adaptive Distillation", ECCV 2020. The L2 distillation term gets a
learned per-example, per-dimension variance: a head on the student's embedding predicts log s^2, and
loss = mean over examples of mean over dimensions of (z - v)^2 / (eps + s^2) + log s^2, so that hard
("non-prime") examples weigh less. It is the second stage after plain L2 training.

What z and v are (`tap`):
- `tap: null` (default): the logits, with a linear head embedding -> classes; cfg/kd/pad_l2.yaml runs the L2
  stage as a pre-training phase of the same run.
- `tap: embedding` (torchdistill's PADL2Loss and VarianceBranch4PAD, rrpr2020 pad_l2 config): the student's and
  the teacher's embeddings (ResNet avgpool outputs), with torchdistill's head Linear(d, d) + BatchNorm1d(d);
  cfg/kd/pad_l2_embedding.yaml, started from the L2 student (`FeatureL2Term`, cfg/kd/l2_embedding.yaml) with
  student_init_checkpoint.
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm


def check_same_shape(tap: str, student_shapes, teacher_shapes, who: str) -> None:
    student, teacher = tuple(student_shapes[tap][1:]), tuple(teacher_shapes[tap][1:])
    if student != teacher:
        raise ConfigError(f"{who} compares the student's and the teacher's '{tap}' directly, but their shapes differ "
                          f"({student} vs {teacher}); use a pair whose '{tap}' widths match (e.g. ResNet-34 -> "
                          f"ResNet-18 embeddings, both 512) or a method with a regressor (kd=fitnet)")


class FeatureL2Term(DistillTerm):
    """L2 between the student's and the teacher's features at one tap: mean squared error over all B x D entries
    (torchdistill's rrpr2020 ce_l2 config: MSELoss on the avgpool outputs, weight 15)."""

    def __init__(self, weight: float = 1.0, tap: str = "embedding") -> None:
        super().__init__(weight)
        self.tap = str(tap)
        self.student_taps = self.teacher_taps = (self.tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        check_same_shape(self.tap, student_shapes, teacher_shapes, "FeatureL2Term")

    def forward(self, batch: DistillBatch):
        student = batch.student_features[self.tap].float().flatten(1)
        return F.mse_loss(student, batch.teacher_features[self.tap].float().flatten(1))

    def extra_repr(self) -> str:
        return f"weight={self.weight}, tap={self.tap}"


class PADL2Term(DistillTerm):
    def __init__(self, weight: float = 1.0, eps: float = 1e-6, tap: str | None = None) -> None:
        super().__init__(weight)
        self.eps, self.tap = float(eps), tap
        self.student_taps = ("embedding",) if tap is None else tuple(dict.fromkeys(("embedding", tap)))
        self.teacher_taps = () if tap is None else (tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        embedding = math.prod(student_shapes["embedding"][1:])
        if self.tap is None:
            self.log_variance = nn.Linear(embedding, num_classes)
            return
        check_same_shape(self.tap, student_shapes, teacher_shapes, "kd.terms.pad_l2")
        width = math.prod(student_shapes[self.tap][1:])
        self.log_variance = nn.Sequential(nn.Linear(embedding, width), nn.BatchNorm1d(width))

    def forward(self, batch: DistillBatch):
        log_variance = self.log_variance(batch.student_features["embedding"].float().flatten(1))
        if self.tap is None:
            student, teacher = batch.student_logits.float(), batch.teacher_logits.float()
        else:
            student = batch.student_features[self.tap].float().flatten(1)
            teacher = batch.teacher_features[self.tap].float().flatten(1)
        return ((student - teacher) ** 2 / (self.eps + torch.exp(log_variance)) + log_variance).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, eps={self.eps}, tap={self.tap}"
