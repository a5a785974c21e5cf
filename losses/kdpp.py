"""KD++ / DKD++: Wang et al., "Improving Knowledge Distillation via Regularizing Feature Norm and Direction"
(ICCV 2023). Anchor: WangYZ1608/Knowledge-Distillation-via-ND, CIFAR/utils.py (DirectNormLoss, KDLoss, DKDLoss),
CIFAR/train_cifar_kd.py and train_cifar_dkd.py, CIFAR/Models/embtrans_cifar.py, CIFAR/emb_fea_distribution.py.

The ND ("norm and direction") term acts on the student's embedding s (the classifier's input) and the teacher's t:
with c_y the teacher's class centre of the label y and e = c_y / ||c_y|| its direction,
    ND = mean_i [1 - <s_i, e_{y_i}> / max(||s_i||, ||t_i||)],
which pulls the student's embedding towards the teacher's class-centre direction and pushes its norm up to at least
the teacher's. KD++ is CE + KD + ND, DKD++ is CE + DKD + ND.

Class centres, as the anchor makes them (emb_fea_distribution.py, shipped as ckpt/teacher/*/center_emb_train.json):
the mean of the teacher's embeddings over the training set per class, the teacher in eval mode, one pass under the
training augmentation. `centres: class_mean` computes them so, once before training (runs/class_means.py; the
augmentation's draws seeded, so every process and every resume gets the same centres, kept in the checkpoint);
`centres: classifier` takes the rows of the teacher's classifier weight instead (no pass over the data).
Where the embedding widths differ the anchor maps the student's embedding to the teacher's width by
BatchNorm1d -> Dropout(0.5) -> Linear (EmbTrans, zero biases), trained with the student; so does this term.

Warm-up: the anchor ramps the KD (or DKD) term by min(1, epoch / 20) with epochs counted from 0, so the first epoch
has no KD at all (one epoch behind mdistiller's ramp, losses.base.warmup_ramp); `AnchorRampKDTerm` and
`AnchorRampDKDTerm` apply that ramp; the ND term is not ramped."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.dkd import DKDTerm
from losses.kd import KDTerm
from models.features import resolve_tap

EMBEDDING = "embedding"


def zero_based_ramp(epoch: int, warmup_epochs: int) -> float:
    """The anchor's min(1, epoch / warm_up) with Lightning's 0-based epoch: 0 in the first epoch."""
    return min(epoch / warmup_epochs, 1.0) if warmup_epochs else 1.0


class AnchorRampKDTerm(KDTerm):
    """KD (T^2 KL, batch mean) times the anchor's ramp over `warmup_epochs` (train_cifar_kd.py)."""

    def __init__(self, weight: float = 1.0, temperature: float = 4.0, warmup_epochs: int = 20) -> None:
        super().__init__(weight, temperature)
        self.warmup_epochs = int(warmup_epochs)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        return zero_based_ramp(batch.epoch, self.warmup_epochs) * super().forward(batch)


class AnchorRampDKDTerm(DKDTerm):
    """DKD (mdistiller's, as the anchor's DKDLoss computes it) times the anchor's ramp (train_cifar_dkd.py) in
    place of mdistiller's."""

    def __init__(self, weight: float = 1.0, weight_tckd: float = 1.0, weight_nckd: float = 8.0,
                 temperature: float = 4.0, warmup_epochs: int = 20) -> None:
        super().__init__(weight, weight_tckd, weight_nckd, temperature, warmup_epochs=0)
        self.ramp_epochs = int(warmup_epochs)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        return zero_based_ramp(batch.epoch, self.ramp_epochs) * super().forward(batch)


class NormDirectionTerm(DistillTerm):
    student_taps = (EMBEDDING,)
    teacher_taps = (EMBEDDING,)

    def __init__(self, weight: float = 1.0, centres: str = "class_mean", dropout: float = 0.5) -> None:
        """`centres`: "class_mean" (the anchor's) or "classifier" (runs/validation.py checks it)."""
        super().__init__(weight)
        self.centres, self.dropout = centres, float(dropout)
        # The teacher tap whose per-class training-set means the run computes before setup (runs/class_means.py).
        self.teacher_class_means = EMBEDDING if centres == "class_mean" else None
        self._centres: torch.Tensor | None = None
        self.projector: nn.Module | None = None

    def bind_teacher(self, teacher: nn.Module, example_input: torch.Tensor) -> None:
        if self.centres == "classifier":
            name = resolve_tap(teacher, EMBEDDING).partition(":")[0]  # the classifier, whose input is the embedding
            self._centres = dict(teacher.named_modules())[name].weight.detach().float().cpu().clone()

    def bind_teacher_class_means(self, means: torch.Tensor) -> None:
        self._centres = means.detach().float().cpu()

    def setup(self, student_shapes: Mapping[str, torch.Size], teacher_shapes: Mapping[str, torch.Size],
              num_classes: int, num_train: int) -> None:
        if self._centres is None:
            raise RuntimeError("the ND term's class centres were never given: the run computes them before setup "
                               "(runs/class_means.py bind_class_means)")
        student_width, teacher_width = student_shapes[EMBEDDING][1], teacher_shapes[EMBEDDING][1]
        if self._centres.shape != (num_classes, teacher_width):
            raise ConfigError(f"the teacher's class centres are {tuple(self._centres.shape)}, but the data has "
                              f"{num_classes} classes and the teacher's embedding {teacher_width} dimensions")
        # Kept in the checkpoint, so a resumed run uses the centres it started with.
        self.register_buffer("class_directions", F.normalize(self._centres, dim=1))
        if student_width != teacher_width:
            linear = nn.Linear(student_width, teacher_width)
            nn.init.zeros_(linear.bias)
            self.projector = nn.Sequential(nn.BatchNorm1d(student_width), nn.Dropout(self.dropout), linear)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        student = batch.student_features[EMBEDDING].flatten(1).float()
        teacher = batch.teacher_features[EMBEDDING].flatten(1).float()
        if self.projector is not None:
            student = self.projector(student)
        direction = self.class_directions[batch.targets]
        largest_norm = torch.maximum(student.norm(dim=1), teacher.norm(dim=1))
        return (1 - (student * direction).sum(dim=1) / largest_norm).mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, centres={self.centres!r}"
