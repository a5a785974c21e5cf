"""LightningModule that distills a student from a frozen teacher through a weighted set of terms.

The teacher is deliberately *not* a registered submodule: it never appears in `parameters()`, the
optimizer, or the state dict / checkpoint, and Lightning's `train()` calls never reach it. `_apply` is
extended so device and dtype moves still carry it along.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from losses import DistillationObjective, DistillBatch
from models.teachers import FrozenTeacher
from tasks.classification import ClassificationTask
from tasks.features import FeatureTaps
from tasks.metrics import FidelityMetrics
from tasks.stages import Stage, stage_at


class DistillationTask(ClassificationTask):
    def __init__(self, student: nn.Module, teacher: FrozenTeacher, objective: DistillationObjective,
                 num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, model_config: dict | None = None,
                 example_input: torch.Tensor | None = None, num_train: int = 0,
                 stages: list[Stage] | None = None) -> None:
        super().__init__(student, num_classes, optimizer, scheduler, model_config)
        self.stages = stages or []
        object.__setattr__(self, "teacher", teacher)
        self.objective = objective
        for term in objective.terms.values():
            term.bind_models(student, teacher.model)
        self.student_taps = FeatureTaps(student, objective.student_taps)
        teacher.capture(objective.teacher_taps)
        if example_input is not None:
            self._probe(example_input, num_train)
        self.val_fidelity = FidelityMetrics(num_classes, "val/")
        self.test_fidelity = FidelityMetrics(num_classes, "test/")

    @torch.no_grad()
    def _probe(self, example_input: torch.Tensor, num_train: int) -> None:
        """One forward of both models (student in eval mode: BatchNorm statistics stay put) to give the
        objective's terms the feature shapes they build their trainable parts from."""
        was_training = self.model.training
        self.model.eval()
        self.model(example_input)
        student_shapes = {tap: feature.shape for tap, feature in self.student_taps.pop().items()}
        _, teacher_features = self.teacher(example_input)
        self.model.train(was_training)
        for term in self.objective.terms.values():
            term.bind_teacher(self.teacher.model, example_input)
        self.objective.setup(student_shapes, {tap: f.shape for tap, f in teacher_features.items()},
                             self.num_classes, num_train)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    @property
    def stage(self) -> Stage | None:
        return stage_at(self.stages, self.current_epoch)

    def on_train_epoch_start(self) -> None:
        # Fixed at the epoch's start: Lightning may advance current_epoch before the epoch-end LR step.
        self._epoch_stage = self.stage
        learning = self.stage.train if self.stage else ("student", "objective")
        for part, module in (("student", self.model), ("objective", self.objective)):
            module.requires_grad_(part in learning)  # no grad: SGD skips it, momentum and decay included
        if "student" not in learning:
            self.model.eval()  # a frozen student's BatchNorm statistics stay put too

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if getattr(self, "_epoch_stage", None) is None:  # the schedule counts main-stage epochs only
            super().lr_scheduler_step(scheduler, metric)

    def training_step(self, batch, batch_idx):
        x, y, idx = self.objective.expand_batch(*batch)
        teacher_logits, teacher_features = self.teacher(x, idx)
        student_logits = self.model(x)
        distill_batch = DistillBatch(inputs=x, targets=y, indices=idx, student_logits=student_logits,
                                     teacher_logits=teacher_logits, student_features=self.student_taps.pop(),
                                     teacher_features=teacher_features, epoch=self.current_epoch,
                                     global_step=self.global_step, stage=self.stage.name if self.stage else None)
        total, values = self.objective(distill_batch, self.stage.weights if self.stage else None)
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict({f"train/{name}": value.detach() for name, value in values.items()}, on_epoch=True)
        self.log("train/top1", (student_logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True)
        return total

    def _evaluate(self, batch, stage: str):
        x, y, idx = batch
        student_logits = super()._evaluate(batch, stage)
        self.student_taps.pop()
        teacher_logits, _ = self.teacher(x, idx)
        fidelity = self.val_fidelity if stage == "val" else self.test_fidelity
        fidelity.update(student_logits, teacher_logits, y)
        self.log_dict(fidelity, on_epoch=True)
        return student_logits

    def trainable_parameters(self):
        # Trainable parts of terms (regressors, embeddings, ...) learn with the student.
        return [*self.model.parameters(), *self.objective.parameters()]
