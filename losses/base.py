"""The distillation objective: a set of named, weighted terms over one `DistillBatch`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch
from torch import nn

from errors import ConfigError


@dataclass
class DistillBatch:
    """Everything a term may read in one step. Features are keyed by symbolic tap ("stage:-1", ...)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    indices: torch.Tensor
    student_logits: torch.Tensor
    teacher_logits: torch.Tensor
    student_features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    teacher_features: Mapping[str, torch.Tensor] = field(default_factory=dict)
    epoch: int = 0
    global_step: int = 0
    phase: str | None = None  # the pre-training phase's name, None in the main phase
    soft_targets: torch.Tensor | None = None  # (B, K) label mixtures under mixup / cutmix, else None
    generated: torch.Tensor | None = None  # (B,) bool: rows an augmentation generated (augment=synthetic), else None
    # The other augmented views of the same examples, when a term asks for them (`DistillTerm.train_views`): e.g.
    # views["strong"], a DistillBatch of that view's inputs, logits and features (same targets and indices). The
    # fields above are the weak view's: the loader's own training transform.
    views: Mapping[str, "DistillBatch"] = field(default_factory=dict)


@dataclass(frozen=True)
class TupleBatches:
    """Training batches a term makes its own (comparative KD's CKDSample, alextxu/ckd): each step data.batch_size
    tuples of `positives` + `negatives` distinct training examples, drawn from a pool of at most `pool_size` such
    tuples fixed once per run; the batch's rows are every tuple's positives (tuple by tuple), then every tuple's
    negatives. The student sees the two blocks in two forwards, as the anchor's two calls do (BatchNorm batch
    statistics per block)."""

    positives: int
    negatives: int
    pool_size: int

    def __post_init__(self) -> None:
        if self.positives < 1 or self.negatives < 1 or self.pool_size < 1:
            raise ConfigError(f"tuple batches need positives, negatives and pool_size >= 1, got {self.positives}, "
                              f"{self.negatives}, {self.pool_size}")

    @property
    def size(self) -> int:
        return self.positives + self.negatives

    def blocks(self, rows: int) -> list[int]:
        """[positive rows, negative rows] of a batch of `rows` rows."""
        if rows % self.size:
            raise RuntimeError(f"a batch of {rows} rows is not made of {self.size}-example tuples")
        tuples = rows // self.size
        return [tuples * self.positives, tuples * self.negatives]


@dataclass(frozen=True)
class ClassGroupedBatches:
    """Training batches of `per_class` random examples from each of randomly ordered classes, cut to
    data.batch_size rows (comparative KD's RKDSampler, from the RKD authors' sampler)."""

    per_class: int

    def __post_init__(self) -> None:
        if self.per_class < 1:
            raise ConfigError(f"class-grouped batches need per_class >= 1, got {self.per_class}")


# A term input option that reads a model's logits instead of a feature tap (e.g. comparative KD's RKD and CRD arms).
LOGITS = "logits"


def hooked_taps(tap: str) -> tuple[str, ...]:
    """The feature taps to hook for a term input `tap` (none for the logits)."""
    return () if tap == LOGITS else (tap,)


def read_input(batch: "DistillBatch", tap: str, side: str) -> torch.Tensor:
    """A term's input from one side ("student" or "teacher") of the batch: its logits or a tapped feature."""
    if tap == LOGITS:
        return batch.student_logits if side == "student" else batch.teacher_logits
    return (batch.student_features if side == "student" else batch.teacher_features)[tap]


class DistillTerm(nn.Module):
    """One distillation term. Subclasses return the *unweighted* value; the objective applies `weight`.

    `student_taps` / `teacher_taps` name the symbolic feature taps the term reads (see models/features.py);
    the distillation task hooks exactly those, so logit-only terms cost no feature capture. A term may set
    them per instance in `__init__` (e.g. from a `stages` argument).

    Terms with trainable parts (regressors, embeddings, memory banks) build them in `setup`, which the
    distillation task calls once, before the optimizer exists, with the shapes of every tapped feature
    (found by probing one batch) - so no term needs to know its architectures' channel counts.
    """

    student_taps: tuple[str, ...] = ()
    teacher_taps: tuple[str, ...] = ()
    # The training batches the term needs instead of the loader's shuffled ones (None: those).
    train_batches: TupleBatches | ClassGroupedBatches | None = None
    # Augmented views of each training example the term reads beyond the batch's own, as batch.views[name]
    # (datamodules/two_views.py makes them): ("strong",) for MLKD's RandAugment view.
    train_views: tuple[str, ...] = ()
    # Buffers each process keeps its own under DDP (not broadcast from rank 0), by name under the term.
    process_local_buffers: tuple[str, ...] = ()
    # A teacher tap whose per-class means over the training set the term needs (KD++'s class centres), or None.
    teacher_class_means: str | None = None

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__()
        self.weight = float(weight)  # a number >= 0: runs/validation.py checks kd.terms.*.weight (and temperatures)

    def setup(self, student_shapes: Mapping[str, torch.Size], teacher_shapes: Mapping[str, torch.Size],
              num_classes: int, num_train: int) -> None:
        """Build trainable parts from feature shapes (batch dimension included). Default: none."""

    @property
    def reads_teacher_features(self) -> bool:
        """Whether the term needs the teacher's features (so its outputs alone, e.g. cached, do not do)."""
        return bool(self.teacher_taps)

    def bind_models(self, student: nn.Module, teacher: nn.Module) -> None:
        """Settle what depends on both architectures (e.g. `stages: null` -> their shared stages), before the
        task hooks the taps. Default: nothing."""

    def bind_teacher(self, teacher: nn.Module, example_input: torch.Tensor) -> None:
        """Read what the term needs from the frozen teacher itself (e.g. OFD's BatchNorm margins) or check
        the input it will see, once, before `setup`. Default: nothing."""

    def bind_training_labels(self, labels: torch.Tensor) -> None:
        """The label of every example of the original training set (`num_train` of them, int64), -1 for those
        the train loader never draws (validation, a held-out fold, outside a budget), once, before `setup`:
        for terms that sample training examples by class (CRD's other-class negatives). Default: nothing."""

    def bind_teacher_class_means(self, means: torch.Tensor) -> None:
        """(num_classes, size): the frozen teacher's mean `teacher_class_means` feature per class over the training
        set (runs/class_means.py), once, before `setup`. Default: nothing."""

    def expand_batch(self, inputs: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor):
        """The training batch both models should see (e.g. SSKD's rotated copies), as (inputs, targets,
        indices). Default: unchanged."""
        return inputs, targets, indices

    def forward(self, batch: DistillBatch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"weight={self.weight}"


def warmup_ramp(epoch: int, warmup_epochs: int) -> float:
    """mdistiller's linear warm-up min(epoch / warmup, 1) with its epochs counted from 1; `epoch` here is
    Lightning's 0-based one, hence epoch + 1: 1/warmup in the first epoch, 1 from epoch `warmup` on."""
    return min((epoch + 1) / warmup_epochs, 1.0) if warmup_epochs else 1.0


class DistillationObjective(nn.Module):
    """Sum of weighted terms. Terms with trainable parts are submodules, so they train with the student."""

    def __init__(self, terms: Mapping[str, DistillTerm]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict({name: term for name, term in terms.items() if term is not None})
        # Weight-0 terms stay (a training phase may use them) but the main phase skips them.
        self.main_weights = {name: term.weight for name, term in self.terms.items() if term.weight > 0}
        if not self.main_weights:
            raise ConfigError("the distillation objective has no term with a positive weight; "
                              "give at least one kd.terms.<name>.weight > 0")

    @property
    def student_taps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tap for term in self.terms.values() for tap in term.student_taps))

    @property
    def teacher_taps(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(tap for term in self.terms.values() for tap in term.teacher_taps))

    @property
    def train_batches(self) -> TupleBatches | ClassGroupedBatches | None:
        """The one batch layout the terms ask for, or None."""
        plans = {name: term.train_batches for name, term in self.terms.items() if term.train_batches is not None}
        if len(set(plans.values())) > 1:
            raise ConfigError(f"terms {sorted(plans)} each make their own training batches ({plans}); keep one")
        return next(iter(plans.values()), None)

    @property
    def train_views(self) -> dict[str, list[str]]:
        """{view name: the terms that read it} over every term's `train_views`."""
        views: dict[str, list[str]] = {}
        for name, term in self.terms.items():
            for view in term.train_views:
                views.setdefault(view, []).append(name)
        return views

    def bind_teacher_class_means(self, means: torch.Tensor) -> None:
        """(num_classes, size): the frozen teacher's mean `teacher_class_means` feature per class over the training
        set (runs/class_means.py), once, before `setup`. Default: nothing."""

    def expand_batch(self, inputs: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor):
        for term in self.terms.values():
            inputs, targets, indices = term.expand_batch(inputs, targets, indices)
        return inputs, targets, indices

    def setup(self, student_shapes, teacher_shapes, num_classes: int, num_train: int,
              train_labels: torch.Tensor | None = None) -> None:
        """Set every term up; `train_labels` (see `DistillTerm.bind_training_labels`) when the data has them."""
        for term in self.terms.values():
            if train_labels is not None:
                term.bind_training_labels(train_labels)
            term.setup(student_shapes, teacher_shapes, num_classes, num_train)

    def forward(self, batch: DistillBatch, weights: Mapping[str, float] | None = None
                ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Returns (weighted total, {term name: unweighted value}). `weights` (a training phase's) replaces
        the terms' own weights and computes only the terms it names."""
        weights = self.main_weights if weights is None else weights
        values = {name: self.terms[name](batch) for name in weights}
        total = sum(weights[name] * value for name, value in values.items())
        return total, values
