"""FSP: Yim et al., "A Gift from Knowledge Distillation", CVPR 2017. The "flow of solution procedure"
between consecutive stages is the Gram matrix G_ij = mean over positions of F1_i * F2_j (the larger map
pooled to the smaller); loss = mean squared difference of student and teacher FSP matrices, summed over
consecutive stage pairs. Student and teacher stages need equal channel counts. RepDistiller uses it to
pre-train the student's features (30 epochs), then trains with CE alone, as cfg/kd/fsp.yaml does."""
import torch

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import match_spatial, stage_taps


def fsp_matrix(bottom: torch.Tensor, top: torch.Tensor) -> torch.Tensor:
    bottom, top = match_spatial(bottom, top)
    return torch.einsum("bip,bjp->bij", top.flatten(2), bottom.flatten(2)) / bottom.flatten(2).shape[2]


class FSPTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, stages=(0, 1, 2, 3)) -> None:
        super().__init__(weight)
        if len(stages) < 2:
            raise ConfigError("FSP needs at least two consecutive stages, e.g. stages: [0, 1, 2, 3]")
        self.student_taps = self.teacher_taps = stage_taps("stage", stages)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        student = [student_shapes[t][1] for t in self.student_taps]
        teacher = [teacher_shapes[t][1] for t in self.teacher_taps]
        if student != teacher:
            raise ConfigError(f"FSP needs equal student and teacher channel counts at every stage (student {student}, teacher {teacher})")

    def forward(self, batch: DistillBatch):
        s = [batch.student_features[t].float() for t in self.student_taps]
        t = [batch.teacher_features[t].float() for t in self.teacher_taps]
        return sum((fsp_matrix(s[i], s[i + 1]) - fsp_matrix(t[i], t[i + 1])).pow(2).mean() for i in range(len(s) - 1))
