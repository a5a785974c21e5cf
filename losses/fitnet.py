"""FitNets: Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015. A regressor maps the student's
"guided" layer onto the teacher's "hint" layer; loss = mean squared error between them (RepDistiller's
HintLoss on feat[hint_layer=2], i.e. stage 2). The regressor is RepDistiller's ConvReg (`Regressor`):
conv + BN + ReLU from the student's channels to the teacher's; a student map twice the teacher's size is
halved by a stride-2 3x3 conv, one half its size doubled by a stride-2 transposed conv, a larger one shrunk
by a (1 + dH) x (1 + dW) valid conv; a smaller map by another ratio is refused (pick other stages).
Hint pre-training is a `kd.phases` entry that trains this term alone."""
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import Regressor
from losses.stagewise import one_stage_tap


class FitNetTerm(DistillTerm):
    def __init__(self, weight: float = 100.0, stage: int = 2) -> None:
        super().__init__(weight)
        self.tap = one_stage_tap(stage, "kd.terms.fitnet.stage", "stage=2 (RepDistiller's hint layer)")
        self.student_taps = self.teacher_taps = (self.tap,)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        self.regressor = Regressor(student_shapes[self.tap], teacher_shapes[self.tap])

    def forward(self, batch: DistillBatch):
        student = self.regressor(batch.student_features[self.tap].float())
        return F.mse_loss(student, batch.teacher_features[self.tap].float())

    def extra_repr(self) -> str:
        return f"weight={self.weight}, tap={self.tap}"
