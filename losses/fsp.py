"""FSP: Yim et al., "A Gift from Knowledge Distillation", CVPR 2017. The "flow of solution procedure"
between consecutive stages is the Gram matrix G_ij = mean over positions of F1_i * F2_j (the larger map
pooled to the smaller); loss = mean squared difference of student and teacher FSP matrices, summed over
consecutive stage pairs. Student and teacher stages need equal channel counts. Stages: every stage, the stem
included, by default (`stages: all`, RepDistiller's feat[:-1] in train_student.py: 5 stages and 4 matrices
for VGG, 4 and 3 for the CIFAR ResNets and WRNs). RepDistiller uses it to pre-train the student's features
(30 epochs), then trains with CE alone, as cfg/kd/fsp.yaml does."""
import torch

from errors import ConfigError
from losses.stagewise import EVERY_STAGE, StagewiseTerm
from losses.base import DistillBatch
from losses.feature_utils import match_spatial


def fsp_matrix(bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    bottom, top = match_spatial(bottom, top)
    return torch.einsum("bip,bjp->bij", top.flatten(2), bottom.flatten(2)) / bottom.flatten(2).shape[2]


class FSPTerm(StagewiseTerm):
    def __init__(self, weight: float = 1.0, stages=EVERY_STAGE) -> None:
        super().__init__(weight, stages, "kd.terms.fsp.stages")
        if isinstance(self.stages, list) and len(self.stages) < 2:
            raise ConfigError(f"FSP needs at least two consecutive stages, got {stages!r}; "
                              f"use e.g. kd.terms.fsp.stages=[0,1,2,3], or all")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        super().setup(student_shapes, teacher_shapes, num_classes, num_train)
        if len(self.student_taps) < 2:
            raise ConfigError("FSP relates consecutive stages; these models give it fewer than 2: "
                              "name at least two in kd.terms.fsp.stages")
        student = [student_shapes[t][1] for t in self.student_taps]
        teacher = [teacher_shapes[t][1] for t in self.teacher_taps]
        if student != teacher:
            raise ConfigError(f"FSP needs equal student and teacher channel counts at every stage (student {student}, teacher {teacher})")

    def forward(self, batch: DistillBatch):
        self.check_bound()
        s = [batch.student_features[t].float() for t in self.student_taps]
        t = [batch.teacher_features[t].float() for t in self.teacher_taps]
        return sum((fsp_matrix(s[i], s[i + 1]) - fsp_matrix(t[i], t[i + 1])).pow(2).mean() for i in range(len(s) - 1))
