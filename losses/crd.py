"""CRD: Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020.

Student and teacher embeddings are projected to `feat_dim` and L2-normalised. Each one is contrasted, by
noise-contrastive estimation (NCE), with the *other* model's representation of the same example (positive:
the example itself, the anchors' `exact` mode) against `num_negatives` other training examples (negatives).
The other examples' representations come from a memory bank over the whole training set (the paper's design,
updated with momentum) or, with `memory: queue`, from a FIFO queue of recent batches whose size does not grow
with the dataset; the queue keeps each embedding's label.

Score of a pair: exp(<a, b> / T) / Z, Z fixed on the first batch to mean score * num_train (the paper's
Monte-Carlo estimate of the partition function; num_train: the training examples the loader draws, the
reference code's n_data). NCE with noise probability Pn = 1 / num_train and m = num_negatives:
loss = -(1/B) sum_i [ log(P_i0 / (P_i0 + m Pn)) + sum_j log(m Pn / (P_ij + m Pn)) ].

Negatives (`negatives`):
- `other_class` (default): training examples (queue slots) of classes other than the anchor example's, as all
  three anchors draw them: RepDistiller dataset/cifar100.py CIFAR100InstanceSample, torchdistill
  datasets/wrapper.py CRDDatasetWrapper and CKD (alextxu/ckd) dataset/sampling/CRDSample.py take them from
  `cls_negative[target]` in both of their modes (`exact` and `relax` differ only in the positive: the example
  itself, or another example of its class). Queue slots not yet filled hold no example and may be drawn.
- `uniform`: over all training examples (queue slots), the anchor's class included: RepDistiller
  crd/memory.py ContrastMemory's own draw when it is given no contrast indices.
Draws are independent, on the device, from per-class index tables. The anchors' samplers draw one example's
negatives without replacement when there are enough (`np.random.choice(..., replace=False)`); the loss is a
sum over negatives, so the expectation of the loss and of its gradient is the same either way (only their
variance differs), and independent draws cost O(B m) where a draw without replacement costs O(B num_train).

`student_tap` / `teacher_tap`: what each side embeds, "embedding" (RepDistiller's feat[-1], default), another
feature tap, or "logits" (comparative KD's CRD arm, alextxu/ckd helper/CRDTrainHelpers.py: CRDLoss on the logits).

Several processes (DDP), `memory_scope`:
- `global` (default): every process updates the memory and Z with the embeddings of the whole global batch and
  draws the whole global batch's negatives from the same generator state, keeping its own rows, so N processes
  with batch B compute what one process with batch N * B computes (losses/distributed.py): RepDistiller's
  single-process runs, at any device count.
- `process`: each process keeps its own memory and Z, updated from its own rows only, and draws its own negatives
  (its own generator stream), as torchdistill's CRDLoss does under distributed training (a criterion outside the
  DDP-wrapped model: nothing synchronises its buffers). The memory buffers are then left out of DDP's buffer
  broadcast (`process_local_buffers`). A checkpoint holds rank 0's memory (Lightning saves from rank 0), so a
  resumed run gives every process rank 0's memory (torchdistill's checkpoints hold no CRD memory at all).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import LOGITS, DistillBatch, DistillTerm, hooked_taps, read_input
from losses.distributed import gather_rows, process_rank_and_count, sum_over_processes

NCE_EPS = 1e-7
NEGATIVES = ("other_class", "uniform")
MEMORY_SCOPES = ("global", "process")


def nce_loss(scores: torch.Tensor, noise_probability: float) -> torch.Tensor:
    """scores (B, 1 + m): column 0 the positive, the rest negatives, all already divided by Z."""
    negatives = scores.shape[1] - 1
    noise = negatives * noise_probability
    log_positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
    log_negative = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
    return -(log_positive.sum() + log_negative.sum()) / scores.shape[0]


def class_table(labels: torch.Tensor, classes: int, slots: torch.Tensor | None = None):
    """Per-class index table of the entries `slots` (default 0, 1, ...) labelled `labels` (in [0, classes)):
    (the slots sorted by class, written twice in a row; where each class's block ends in that order; how many
    slots each class has). Written twice, the slots of every class but one are one contiguous run, starting
    where that class's block ends. Sorts and searches only: no host synchronisation, so it can be rebuilt
    every step (the queue's)."""
    sorted_labels, order = torch.sort(labels, stable=True)
    classes_ = torch.arange(classes, device=labels.device)
    ends = torch.searchsorted(sorted_labels, classes_, right=True)
    sizes = ends - torch.searchsorted(sorted_labels, classes_)
    order = order if slots is None else slots[order]
    return torch.cat([order, order]), ends, sizes


def draw_from_table(table, anchor_labels: torch.Tensor, count: int, generator: torch.Generator,
                    other_class: bool) -> torch.Tensor:
    """(B, count) slots drawn independently and uniformly from the table, only from classes other than each
    anchor's when `other_class`: a uniform position in the run of other classes' slots that starts where the
    anchor's class ends. An anchor whose class fills the whole table draws from all of it."""
    order_twice, ends, sizes = table
    total, shape = len(order_twice) // 2, (len(anchor_labels), count)
    if not other_class:
        positions = torch.randint(total, shape, generator=generator, device=ends.device)
    else:
        first, excluded = ends[anchor_labels].unsqueeze(1), sizes[anchor_labels].unsqueeze(1)
        first = torch.where(excluded == total, 0, first)  # nothing of another class: all of it
        candidates = torch.where(excluded == total, total, total - excluded)
        uniform = torch.rand(shape, generator=generator, device=ends.device, dtype=torch.float64)
        positions = (uniform * candidates).long().add_(first)  # float64: uniform for any table size
    return order_twice.index_select(0, positions.view(-1)).view(shape)  # faster than order_twice[positions]


class Embed(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


class CRDTerm(DistillTerm):
    def __init__(self, weight: float = 0.8, feat_dim: int = 128, num_negatives: int = 16384,
                 temperature: float = 0.07, momentum: float = 0.5, memory: str = "bank",
                 queue_size: int = 16384, negatives: str = "other_class", student_tap: str = "embedding",
                 teacher_tap: str = "embedding", memory_scope: str = "global") -> None:
        super().__init__(weight)
        # What is embedded: the embeddings (RepDistiller's feat[-1]) or, e.g., the logits (comparative KD's CRD arm).
        self.student_tap, self.teacher_tap = str(student_tap), str(teacher_tap)
        self.student_taps, self.teacher_taps = hooked_taps(self.student_tap), hooked_taps(self.teacher_tap)
        if memory not in ("bank", "queue"):
            raise ConfigError(f"kd.terms.crd.memory must be 'bank' or 'queue', got '{memory}'")
        if negatives not in NEGATIVES:
            raise ConfigError(f"kd.terms.crd.negatives must be 'other_class' (the reference code's) or 'uniform', "
                              f"got '{negatives}'")
        if memory_scope not in MEMORY_SCOPES:
            raise ConfigError(f"kd.terms.crd.memory_scope must be 'global' (one memory from the global batch) or "
                              f"'process' (one per process, torchdistill's), got '{memory_scope}'")
        self.memory_scope = memory_scope
        if num_negatives < 1 or feat_dim < 1 or not 0 <= momentum < 1:
            raise ConfigError("CRD needs num_negatives >= 1, feat_dim >= 1 and 0 <= momentum < 1 "
                              f"(got {num_negatives}, {feat_dim}, {momentum}); the paper uses 16384, 128, 0.5")
        self.feat_dim, self.num_negatives = int(feat_dim), int(num_negatives)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.memory, self.queue_size, self.negatives = memory, int(queue_size), negatives
        self.training_labels: torch.Tensor | None = None
        # The negatives' generator is reseeded for every draw from (sampling_seed, draws): the same draw in
        # every process, and a resumed run (both are in the checkpoint, as extra state) continues the stream.
        self.sampling_seed, self.draws = 0, 0
        self._generator: torch.Generator | None = None
        self._normaliser_checked = False  # whether z_student/z_teacher were read since setup or the last load

    def bind_training_labels(self, labels: torch.Tensor) -> None:
        self.training_labels = torch.as_tensor(labels, dtype=torch.int64).cpu()

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        labels = self.training_labels
        if labels is None:
            if self.negatives == "other_class":
                raise ConfigError("kd.terms.crd.negatives=other_class draws negatives by class, but no training "
                                  "labels reached CRD (the distillation task passes them from the datamodule: "
                                  "DistillationTask(train_labels=...)); set kd.terms.crd.negatives=uniform to "
                                  "draw without labels")
            labels = torch.zeros(num_train, dtype=torch.int64)  # one class: every example a candidate
        if len(labels) != num_train:
            raise ValueError(f"CRD got {len(labels)} training labels for {num_train} training examples")
        pool = torch.nonzero(labels >= 0).squeeze(1)  # the examples the loader draws: all that reach the bank
        if len(pool) < 2:
            raise ConfigError("CRD needs the size of the training set to sample negatives from")
        if labels.max() >= num_classes:
            raise ConfigError(f"the training labels go up to {int(labels.max())}, but data.num_classes is "
                              f"{num_classes}; set data.num_classes to the number of classes")
        if self.negatives == "other_class" and len(labels[pool].unique()) < 2:
            raise ConfigError("kd.terms.crd.negatives=other_class needs training examples of at least two classes; "
                              "use kd.terms.crd.negatives=uniform")
        self.num_classes, self.num_train = int(num_classes), len(pool)
        width = {LOGITS: num_classes}
        self.embed_student = Embed(width.get(self.student_tap) or math.prod(student_shapes[self.student_tap][1:]),
                                   self.feat_dim)
        self.embed_teacher = Embed(width.get(self.teacher_tap) or math.prod(teacher_shapes[self.teacher_tap][1:]),
                                   self.feat_dim)
        slots = len(labels) if self.memory == "bank" else self.queue_size
        bound = 1.0 / math.sqrt(self.feat_dim / 3)  # the reference code's uniform init of the bank
        for name in ("memory_student", "memory_teacher"):
            self.register_buffer(name, torch.rand(slots, self.feat_dim).mul_(2 * bound).sub_(bound))
        # Partition-function estimates, fixed on the first training batch (0 = not yet set).
        self.register_buffer("z_student", torch.zeros(()))
        self.register_buffer("z_teacher", torch.zeros(()))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))
        if self.memory == "queue":  # the class of each queued embedding, -1 while a slot holds none
            self.register_buffer("memory_labels", torch.full((slots,), -1, dtype=torch.long))
        else:  # the bank's per-class table: fixed, rebuilt from the labels at every setup, so not saved
            for name, table in zip(("bank_order_twice", "bank_class_ends", "bank_class_sizes"),
                                   class_table(labels[pool], self.num_classes, pool)):
                self.register_buffer(name, table, persistent=False)
        self.sampling_seed = int(torch.randint(2**62, ()).item())  # from the run's seed
        self._normaliser_checked = False
        self.training_labels = None

    @property
    def process_local_buffers(self) -> tuple[str, ...]:
        """Buffers each process keeps its own (never broadcast from rank 0): the memory under memory_scope=process."""
        if self.memory_scope == "global":
            return ()
        names = ("memory_student", "memory_teacher", "z_student", "z_teacher", "queue_pointer", "memory_labels")
        return tuple(name for name in names if name in self._buffers)

    def get_extra_state(self) -> dict:
        return {"sampling_seed": self.sampling_seed, "draws": self.draws}

    def set_extra_state(self, state: dict) -> None:
        self.sampling_seed, self.draws = int(state["sampling_seed"]), int(state["draws"])
        self._normaliser_checked = False  # the loaded normaliser may be unset (a checkpoint before any step)

    def _next_generator(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
        # memory_scope=process: each process its own stream (rank 0's is the single-process one)
        rank = process_rank_and_count()[0] if self.memory_scope == "process" else 0
        self._generator.manual_seed((self.sampling_seed * 1_000_003 + self.draws + rank * 7_919_000_003) % 2**63)
        self.draws += 1
        return self._generator

    def _draw_negatives(self, anchor_labels: torch.Tensor) -> torch.Tensor:
        """(B, num_negatives) memory slots for anchors of these classes."""
        if self.memory == "bank":
            table = (self.bank_order_twice, self.bank_class_ends, self.bank_class_sizes)
        else:  # empty slots form a class of their own, never an anchor's
            labels = torch.where(self.memory_labels < 0, self.num_classes, self.memory_labels)
            table = class_table(labels, self.num_classes + 1)
        generator = self._next_generator(self.memory_student.device)
        return draw_from_table(table, anchor_labels, self.num_negatives, generator, self.negatives == "other_class")

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        student = self.embed_student(read_input(batch, self.student_tap, "student").float())
        teacher = self.embed_teacher(read_input(batch, self.teacher_tap, "teacher").float())
        if not self.training:  # no memory at evaluation: the term is a training signal only
            return student.new_zeros(())
        # The global batch (all processes' rows; this process's alone without DDP or under memory_scope=process),
        # for the draw and the update.
        own = (student.detach(), teacher.detach(), batch.indices, batch.targets)
        (all_student, all_teacher, all_indices, all_labels), first = (
            gather_rows(*own) if self.memory_scope == "global" else (list(own), 0))
        negatives = self._draw_negatives(all_labels)[first: first + len(student)]
        # Student anchored against teacher representations, and teacher anchored against student ones: one
        # product with the whole memory, then the drawn slots' columns (cheaper than copying B x K memory rows).
        # The backward pass reads the memory as it is now, so the products get a copy the update leaves alone.
        dots_student = student @ self.memory_teacher.clone().t()  # (B, slots); the memory takes no gradient
        dots_teacher = teacher @ self.memory_student.clone().t()
        if self.memory == "bank":  # the positive is the example's own slot
            contrast = torch.cat([batch.indices.view(-1, 1), negatives], dim=1)
            dots_student, dots_teacher = dots_student.gather(1, contrast), dots_teacher.gather(1, contrast)
        else:  # the positive is the other model's current embedding
            positive_student = (student * teacher.detach()).sum(1, keepdim=True)
            positive_teacher = (teacher * student.detach()).sum(1, keepdim=True)
            dots_student = torch.cat([positive_student, dots_student.gather(1, negatives)], dim=1)
            dots_teacher = torch.cat([positive_teacher, dots_teacher.gather(1, negatives)], dim=1)
        scores_student = torch.exp(dots_student / self.temperature)  # (B, 1 + K)
        scores_teacher = torch.exp(dots_teacher / self.temperature)
        if not self._normaliser_checked:  # the device is asked once per run (or load), not at every step
            self._normaliser_checked = True
            if self.z_student == 0:  # mean over the global batch's scores
                combine = sum_over_processes if self.memory_scope == "global" else (lambda own_sums: own_sums)
                sums = combine(torch.stack([scores_student.detach().sum().double(),
                                                       scores_teacher.detach().sum().double(),
                                                       torch.tensor(scores_student.numel(), dtype=torch.float64,
                                                                    device=student.device)]))
                self.z_student.fill_((sums[0] / sums[2]).item() * self.num_train)
                self.z_teacher.fill_((sums[1] / sums[2]).item() * self.num_train)
        noise = 1.0 / self.num_train
        loss = (nce_loss(scores_student / self.z_student, noise) + nce_loss(scores_teacher / self.z_teacher, noise))
        self._update_memory(all_indices, all_labels, all_student, all_teacher)
        return loss

    @torch.no_grad()
    def _update_memory(self, indices: torch.Tensor, labels: torch.Tensor, student: torch.Tensor,
                       teacher: torch.Tensor) -> None:
        if self.memory == "bank":
            for bank, fresh in ((self.memory_student, student), (self.memory_teacher, teacher)):
                mixed = bank[indices] * self.momentum + fresh * (1 - self.momentum)
                bank[indices] = F.normalize(mixed, dim=1)
            return
        slots = self.memory_student.shape[0]
        positions = (self.queue_pointer + torch.arange(len(indices), device=indices.device)) % slots
        self.memory_student[positions] = student
        self.memory_teacher[positions] = teacher
        self.memory_labels[positions] = labels
        self.queue_pointer.copy_((self.queue_pointer + len(indices)) % slots)

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, feat_dim={self.feat_dim}, num_negatives={self.num_negatives}, "
                f"temperature={self.temperature}, momentum={self.momentum}, memory={self.memory}, "
                f"negatives={self.negatives}, student_tap={self.student_tap}, teacher_tap={self.teacher_tap}, "
                f"memory_scope={self.memory_scope}")
