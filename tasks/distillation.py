"""LightningModule that distills a student from a frozen teacher through a weighted set of terms.

The teacher is deliberately *not* a registered submodule: it never appears in `parameters()`, the
optimizer, or the state dict / checkpoint, and Lightning's `train()` calls never reach it. `_apply` is
extended so device and dtype moves still carry it along.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from datamodules.mixing import BatchMixing
from datamodules.two_views import Views
from errors import ConfigError
from losses import DistillationObjective, DistillBatch, DistillTerm
from losses.base import TupleBatches
from models.teachers import FrozenTeacher
from tasks.classification import ClassificationTask
from tasks.dot import split_losses, takes_split_gradients
from models.features import FeatureTaps, feature_modules
from tasks.metrics import CKATaps, FidelityMetrics, FidelitySettings, fidelity_settings
from tasks.phases import Phase, phase_at, starts_a_phase


def check_views(objective: DistillationObjective, augment: BatchMixing | None, teacher: FrozenTeacher,
                expanding: list[str]) -> None:
    """Terms that read extra augmented views (`DistillTerm.train_views`) need a teacher that answers on them and
    the loader's own batches."""
    readers = sorted({name for names in objective.train_views.values() for name in names})
    if not readers:
        return
    if augment is not None:
        raise ConfigError(f"augment={augment.name} cannot combine with {readers}, which read two augmented views of "
                          f"each example; use augment=none")
    if expanding or objective.train_batches is not None:
        makers = expanding or [n for n, t in objective.terms.items() if t.train_batches is not None]
        raise ConfigError(f"{readers} read two augmented views of each example, which {makers} (making their own "
                          f"training batch) cannot serve; use them apart")
    if not teacher.counts_training_calls:
        raise ConfigError(f"{readers} read a freshly augmented strong view of each example, but teacher=cached only "
                          f"holds its outputs on fixed views; use teacher=single, ensemble or crossfit")


def terms_in_fp32(device_type: str):
    """The context the objective computes in: autocast off (terms compute in fp32 under bf16-mixed), or no context
    where autocast is not on (entering and leaving one costs ~15 us a step)."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


class DistillationTask(ClassificationTask):
    PLAIN_STEP_ATTRIBUTES = ClassificationTask.PLAIN_STEP_ATTRIBUTES | {"teacher_calls"}  # an int, counted each step

    def __init__(self, student: nn.Module, teacher: FrozenTeacher, objective: DistillationObjective,
                 num_classes: int, optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None, model_config: dict | None = None,
                 example_input: torch.Tensor | None = None, num_train: int = 0,
                 train_labels: torch.Tensor | None = None, phases: list[Phase] | None = None,
                 fidelity: FidelitySettings | dict | None = None,
                 augment: BatchMixing | None = None, seed: int = 0, channels_last: bool = False) -> None:
        super().__init__(student, num_classes, optimizer, scheduler, model_config, channels_last, seed)
        self.phases = phases or []
        self.augment = augment if augment is not None and augment.active else None
        expanding = [name for name, term in objective.terms.items()
                     if type(term).expand_batch is not DistillTerm.expand_batch]
        if self.augment is not None and (expanding or objective.train_batches is not None):
            makers = expanding or [n for n, t in objective.terms.items() if t.train_batches is not None]
            raise ConfigError(f"augment={self.augment.name} cannot combine with {makers}, which make their own "
                              f"training batch; use augment=none")
        if self.augment is not None and self.augment.interpolates_teacher and teacher.counts_training_calls:
            raise ConfigError(f"augment={self.augment.name} mixes the cached teacher's outputs instead of asking the "
                              f"teacher; use it with teacher=cached")
        if self.augment is not None and not self.augment.interpolates_teacher and not teacher.counts_training_calls:
            raise ConfigError(f"augment={self.augment.name} needs the teacher's answer on the augmented inputs, but "
                              f"teacher=cached only holds its outputs on the training examples; use teacher=single, "
                              f"ensemble or crossfit (or augment=mixup_interpolated)")
        check_views(objective, self.augment, teacher, expanding)
        # Teacher calls on training data: examples forwarded, and which training examples ever reached it.
        self.teacher_calls = 0
        self.teacher_seen = torch.zeros(max(num_train, 1), dtype=torch.bool)
        object.__setattr__(self, "teacher", teacher)
        self.objective = objective
        self.split_optimizer = None  # set by configure_optimizers under optimizer=dot (tasks/dot.py)
        for term in objective.terms.values():
            term.bind_models(student, teacher.model)
        self.student_taps = FeatureTaps(student, objective.student_taps)
        teacher.capture(objective.teacher_taps)
        if example_input is not None:
            self._probe(example_input, num_train, train_labels)
        local = [f"objective.terms.{name}.{buffer}" for name, term in objective.terms.items()
                 for buffer in term.process_local_buffers]
        if local:  # each process keeps its own (e.g. CRD's memory_scope=process): DDP must not broadcast rank 0's
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, local)
        fidelity = fidelity_settings(fidelity)  # None: agreement, KL, teacher top-1; no CKA
        # Hooked after the probe, apart from the objective's taps: training batches carry no extra feature.
        self.cka_taps = CKATaps(teacher.model, student, fidelity) if fidelity.cka else None
        self.val_fidelity = FidelityMetrics(num_classes, "val/", fidelity)
        self.test_fidelity = FidelityMetrics(num_classes, "test/", fidelity)

    @torch.no_grad()
    def _probe(self, example_input: torch.Tensor, num_train: int, train_labels: torch.Tensor | None) -> None:
        """One forward of both models (student in eval mode: BatchNorm statistics stay put) to give the
        objective's terms the feature shapes they build their trainable parts from (and, where known, the
        training labels: see `DistillTerm.bind_training_labels`)."""
        was_training = self.model.training
        self.model.eval()
        self.model(example_input)
        student_shapes = {tap: feature.shape for tap, feature in self.student_taps.pop().items()}
        _, teacher_features = self.teacher(example_input)
        self.model.train(was_training)
        for term in self.objective.terms.values():
            term.bind_teacher(self.teacher.model, example_input)
        self.objective.setup(student_shapes, {tap: f.shape for tap, f in teacher_features.items()},
                             self.num_classes, num_train, train_labels)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self.channels_last:
            self.teacher.to(memory_format=torch.channels_last)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self.teacher._apply(fn, *args, **kwargs)
        return self

    @property
    def phase(self) -> Phase | None:
        return phase_at(self.phases, self.current_epoch)

    def on_train_epoch_start(self) -> None:
        # Fixed at the epoch's start: Lightning may advance current_epoch before the epoch-end LR step.
        self._epoch_phase = self.phase
        if starts_a_phase(self.phases, self.current_epoch):
            self.start_optimizer_afresh(self.trainer.optimizers, self.phase)
        self.set_phase_trainability()

    def set_phase_trainability(self) -> None:
        """Only the parts the current phase trains take gradients and train-mode statistics."""
        learning = self.phase.train if self.phase else ("student", "objective")
        for part, module in (("student", self.model), ("objective", self.objective)):
            module.requires_grad_(part in learning)  # no grad: SGD skips it, momentum and decay included
        # A frozen student's BatchNorm statistics stay put too; a learning one trains in train mode again after a
        # phase that froze it (Lightning restores the modes it found, it does not reset them per epoch).
        self.model.train("student" in learning)
        if "student_features" in learning and "student" not in learning:  # RepDistiller's get_feat_modules
            for module in feature_modules(self.model):
                module.requires_grad_(True)
                module.train(True)

    @staticmethod
    def start_optimizer_afresh(optimizers, phase: Phase | None) -> None:
        """A phase's own optimizer, as RepDistiller's pre-training builds one: the same kind and settings, no
        state carried over (momentum buffers), at the phase's lr (the main phase: the configured lr, which the
        schedule has not moved yet: it counts main-phase epochs only). A run resumed inside a phase keeps the
        state its checkpoint holds; one resumed at a boundary starts it afresh here, as the unkilled run did."""
        for optimizer in optimizers:
            optimizer.state.clear()
            for group in optimizer.param_groups:
                group["lr"] = phase.lr if phase is not None and phase.lr is not None else group["main_lr"]

    def configure_optimizers(self):
        configured = super().configure_optimizers()
        optimizer = configured["optimizer"] if isinstance(configured, dict) else configured
        for group in optimizer.param_groups:
            group["main_lr"] = group["lr"]  # kept in the optimizer's state dict, so a resumed run has it too
        self.split_optimizer = optimizer if takes_split_gradients(optimizer) else None
        if self.split_optimizer is not None:
            self._check_split_optimizer(self.split_optimizer)
        return configured

    def _check_split_optimizer(self, optimizer) -> None:
        unknown = sorted(set(optimizer.task_terms) - set(self.objective.terms))
        if unknown:
            raise ConfigError(f"optimizer.task_terms names {unknown}, which are not terms of this method; name some of "
                              f"{sorted(self.objective.terms)} (kd.terms), e.g. optimizer.task_terms=[ce]")
        if self._trainer is not None and self.trainer.world_size > 1:
            raise ConfigError("optimizer=dot computes the distillation gradient apart from DDP's synchronised "
                              "backward, so it runs on one process (as mdistiller's DataParallel does); use "
                              "trainer.devices=1")

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if getattr(self, "_epoch_phase", None) is None:  # the schedule counts main-phase epochs only
            super().lr_scheduler_step(scheduler, metric)

    def training_step(self, batch, batch_idx):
        x, y, idx = batch
        x, other_views = (x.weak, x.others()) if isinstance(x, Views) else (x, {})
        x = self.memory_format(x)
        soft_targets = teacher_labelled = None
        if self.augment is not None and self.augment.interpolates_teacher:
            # mixup_interpolated: the cached outputs on the components are mixed; the teacher is not asked
            teacher_logits, teacher_features = self.teacher(x, idx)
            teacher_logits = self.augment.interpolate(teacher_logits, x, self.seed, self.global_step)
            x, soft_targets, _ = self.augment(x, y, self.num_classes, self.seed, self.global_step)
        else:
            if self.augment is not None:  # on the batch, on its device; the teacher labels the mixed input
                x, soft_targets, teacher_labelled = self.augment(x, y, self.num_classes, self.seed, self.global_step)
            x, y, idx = self.objective.expand_batch(x, y, idx)
            teacher_logits, teacher_features = self.teacher(x, idx)
        if teacher_labelled is not None:  # generated rows (augment=synthetic): the teacher's labels
            soft_targets = soft_targets.clone()
            soft_targets[teacher_labelled] = (teacher_logits[teacher_labelled].float()
                                              / self.augment.temperature).softmax(dim=1)
        idx = self.teacher.example_indices(idx)  # a cached teacher's batches encode the view in the index
        if self.teacher.counts_training_calls:
            self.teacher_calls += len(x)
            real = idx if teacher_labelled is None else idx[~teacher_labelled]  # generated rows are no example
            if self.teacher_seen.device != real.device:  # kept beside the batches: no host sync per step
                self.teacher_seen = self.teacher_seen.to(real.device)
            self.teacher_seen[real] = True
        student_logits, student_features = self._student_forward(x)
        phase = self.phase
        distill_batch = DistillBatch(inputs=x, targets=y, indices=idx, student_logits=student_logits,
                                     teacher_logits=teacher_logits, student_features=student_features,
                                     teacher_features=teacher_features, epoch=self.current_epoch,
                                     global_step=self.global_step, phase=phase.name if phase else None,
                                     soft_targets=soft_targets, generated=teacher_labelled,
                                     views=self._view_batches(other_views, y, idx, phase))
        with terms_in_fp32(x.device.type):
            total, values = self.objective(distill_batch, phase.weights if phase else None)
        self.watch_finite({"loss": total, **{f"kd.terms.{name}": v for name, v in values.items()},
                           "the teacher's outputs": teacher_logits}, batch_idx)
        self.log_training_step(batch, {"loss": total, **values}, student_logits, y)
        return self.loss_to_backward(total, values)

    def loss_to_backward(self, total: torch.Tensor, values: dict[str, torch.Tensor]) -> torch.Tensor:
        """What Lightning back-propagates: the total; under optimizer=dot (tasks/dot.py), which keeps the task and
        distillation gradients apart, the task terms' sum, after the distillation terms' gradient (computed first,
        as the anchor does) is handed to the optimizer."""
        optimizer = self.split_optimizer
        if optimizer is None:
            return total
        task, distillation = split_losses(self.phase.weights if self.phase else self.objective.main_weights, values,
                                          optimizer.task_terms)
        if task is None or distillation is None or not distillation.requires_grad:
            return total  # one kind of term in this step: one gradient, which DOT steps as SGD with momentum
        params = [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]
        optimizer.hold_distillation_gradients(
            params, torch.autograd.grad(distillation, params, retain_graph=True, allow_unused=True))
        return task

    def _student_forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The student's logits and tapped features on a training batch; a batch of tuples (losses.base.
        TupleBatches) goes through in its blocks, one forward each, as the anchor's separate calls do."""
        plan = self.objective.train_batches
        if not isinstance(plan, TupleBatches):
            return self.model(x), self.student_taps.pop()
        logits, features = [], []
        for block in x.split(plan.blocks(len(x))):
            logits.append(self.model(block))
            features.append(self.student_taps.pop())
        return torch.cat(logits), {tap: torch.cat([f[tap] for f in features]) for tap in features[0]}

    def _view_batches(self, views: dict[str, torch.Tensor], targets: torch.Tensor, indices: torch.Tensor,
                      phase: Phase | None) -> dict[str, DistillBatch]:
        """Each extra augmented view of the batch's examples (datamodules/two_views.py) through the teacher and the
        student, as a DistillBatch of its own; one forward per view, after the weak one, as MLKD's anchor calls them
        (the student's BatchNorm normalises each view by its own statistics)."""
        batches = {}
        for name, inputs in views.items():
            inputs = self.memory_format(inputs)
            teacher_logits, teacher_features = self.teacher(inputs, indices)
            self.teacher_calls += len(inputs)
            student_logits = self.model(inputs)
            batches[name] = DistillBatch(inputs=inputs, targets=targets, indices=indices,
                                         student_logits=student_logits, teacher_logits=teacher_logits,
                                         student_features=self.student_taps.pop(), teacher_features=teacher_features,
                                         epoch=self.current_epoch, global_step=self.global_step,
                                         phase=phase.name if phase else None)
        return batches

    def _evaluate(self, batch, stage: str):
        x, y, idx = batch
        if self.cka_taps is not None:
            self.cka_taps.pop()  # drop what a training forward left, so a tap that does not fire reads None
        student_logits = super()._evaluate(batch, stage)
        self.student_taps.pop()
        teacher_logits, _ = self.teacher(self.memory_format(x))  # no indices: held-out data (a cross-fit teacher answers as one)
        cka_features = self.cka_taps.pop() if self.cka_taps is not None else (None, None)
        fidelity = self.val_fidelity if stage == "val" else self.test_fidelity
        fidelity.update(student_logits, teacher_logits, y, *cka_features, indices=idx)
        self.log_dict(fidelity, on_epoch=True)
        return student_logits

    def _usage_of_all_processes(self) -> tuple[int, torch.Tensor]:
        """(teacher calls, examples seen) summed over DDP's processes, each of which counts its own share."""
        if self._trainer is None:
            return self.teacher_calls, self.teacher_seen.cpu().clone()
        reduce = self.trainer.strategy.reduce
        calls = reduce(torch.tensor(self.teacher_calls, device=self.device), reduce_op="sum")
        seen = reduce(self.teacher_seen.to(self.device, torch.int32), reduce_op="sum")
        return int(calls), seen.cpu() > 0

    def teacher_usage(self) -> dict[str, int]:
        calls, seen = self._usage_of_all_processes()
        if not self.teacher.counts_training_calls:  # cached: the examples its table holds
            held = self.teacher.cached.any(dim=1).cpu()
            seen[: len(held)] |= held[: len(seen)]
        return {"teacher_calls": calls + getattr(self.teacher, "cache_calls", 0),
                "teacher_examples": int(seen.sum())}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        calls, seen = self._usage_of_all_processes()
        checkpoint["teacher_usage"] = {"calls": calls, "seen": seen.nonzero().flatten()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        usage = checkpoint.get("teacher_usage")
        if usage is not None and self.global_rank == 0:  # a resumed run keeps counting where it stopped; the
            self.teacher_calls = int(usage["calls"])      # counts are every process's, so one process holds them
            self.teacher_seen[usage["seen"].to(self.teacher_seen.device)] = True

    def trainable_parameters(self):
        # Trainable parts of terms (regressors, embeddings, ...) learn with the student.
        return [*self.model.parameters(), *self.objective.parameters()]
