"""FitNets: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015. A regressor maps the student's
"guided" layer onto the teacher's "hint" layer; loss = mean squared error between them (RepDistiller's
HintLoss on feat[2], i.e. stage 2). Optional hint pre-training: a `kd.stages` entry training this term."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import Regressor


class FitNetTerm(DistillTerm):
    def __init__(self, weight: float = 100.0, stage: int = 2) -> None:
        super().__init__(weight)
        self.tap = f"stage:{int(stage)}"
        self.student_taps = self.teacher_taps = (self.tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.regressor = Regressor(student_shapes[self.tap], teacher_shapes[self.tap])

    def forward(self, batch: DistillBatch):
        student = self.regressor(batch.student_features[self.tap].float())
        return F.mse_loss(student, batch.teacher_features[self.tap].float())
