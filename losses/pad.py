"""PAD-L2: Zhang et al., "Prime-Aware Adaptive Distillation", ECCV 2020. The L2 distillation term gets a
learned per-example, per-dimension variance: a linear head on the student's embedding predicts log s^2,
and loss = mean over examples of mean over dimensions of (z - v)^2 / (eps + s^2) + log s^2, so that hard
("non-prime") examples weigh less. As in torchdistill, it is the second stage after plain L2 training:
cfg/kd/pad_l2.yaml runs both stages in one command."""
import math

import torch
from torch import nn

from losses.base import DistillBatch, DistillTerm


class PADL2Term(DistillTerm):
    student_taps = ("embedding",)

    def __init__(self, weight: float = 1.0, eps: float = 1e-6) -> None:
        super().__init__(weight)
        self.eps = float(eps)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.log_variance = nn.Linear(math.prod(student_shapes["embedding"][1:]), num_classes)

    def forward(self, batch: DistillBatch):
        log_variance = self.log_variance(batch.student_features["embedding"].float().flatten(1))
        squared = (batch.student_logits.float() - batch.teacher_logits.float()) ** 2
        return (squared / (self.eps + torch.exp(log_variance)) + log_variance).mean()
