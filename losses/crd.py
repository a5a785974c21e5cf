"""CRD: Tian, Krishnan & Isola, "Contrastive Representation Distillation", ICLR 2020.

Student and teacher embeddings are projected to `feat_dim` and L2-normalised. Each one is contrasted, by
noise-contrastive estimation (NCE), with the *other* model's representation of the same example (positive)
against `num_negatives` other training examples (negatives). The other examples' representations come from
a memory bank over the whole training set (the paper's design, updated with momentum) or, with
`memory: queue`, from a FIFO queue of recent batches whose size does not grow with the dataset.

Score of a pair: exp(<a, b> / T) / Z, Z fixed on the first batch to mean score * num_train (the paper's
Monte-Carlo estimate of the partition function). NCE with noise probability Pn = 1 / num_train and
m = num_negatives: loss = -(1/B) sum_i [ log(P_i0 / (P_i0 + m Pn)) + sum_j log(m Pn / (P_ij + m Pn)) ].
Negatives are drawn uniformly from the training set (the reference code's "relax" mode).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm

NCE_EPS = 1e-7


def nce_loss(scores: torch.Tensor, noise_probability: float) -> torch.Tensor:
    """scores (B, 1 + m): column 0 the positive, the rest negatives, all already divided by Z."""
    negatives = scores.shape[1] - 1
    noise = negatives * noise_probability
    log_positive = torch.log(scores[:, 0] / (scores[:, 0] + noise + NCE_EPS))
    log_negative = torch.log(noise / (scores[:, 1:] + noise + NCE_EPS))
    return -(log_positive.sum() + log_negative.sum()) / scores.shape[0]


class Embed(nn.Module):
    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(x.flatten(1)), dim=1)


class CRDTerm(DistillTerm):
    student_taps = ("embedding",)
    teacher_taps = ("embedding",)

    def __init__(self, weight: float = 0.8, feat_dim: int = 128, num_negatives: int = 16384,
                 temperature: float = 0.07, momentum: float = 0.5, memory: str = "bank",
                 queue_size: int = 16384) -> None:
        super().__init__(weight)
        if memory not in ("bank", "queue"):
            raise ConfigError(f"kd.terms.crd.memory must be 'bank' or 'queue', got '{memory}'")
        if num_negatives < 1 or feat_dim < 1 or not 0 <= momentum < 1:
            raise ConfigError("CRD needs num_negatives >= 1, feat_dim >= 1 and 0 <= momentum < 1 "
                              f"(got {num_negatives}, {feat_dim}, {momentum}); the paper uses 16384, 128, 0.5")
        self.feat_dim, self.num_negatives = int(feat_dim), int(num_negatives)
        self.temperature, self.momentum = float(temperature), float(momentum)
        self.memory, self.queue_size = memory, int(queue_size)

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        if num_train < 2:
            raise ConfigError("CRD needs the size of the training set to sample negatives from")
        self.num_train = int(num_train)
        self.embed_student = Embed(math.prod(student_shapes["embedding"][1:]), self.feat_dim)
        self.embed_teacher = Embed(math.prod(teacher_shapes["embedding"][1:]), self.feat_dim)
        slots = self.num_train if self.memory == "bank" else self.queue_size
        bound = 1.0 / math.sqrt(self.feat_dim / 3)  # the reference code's uniform init of the bank
        for name in ("memory_student", "memory_teacher"):
            self.register_buffer(name, torch.rand(slots, self.feat_dim).mul_(2 * bound).sub_(bound))
        # Partition-function estimates, fixed on the first training batch (0 = not yet set).
        self.register_buffer("z_student", torch.zeros(()))
        self.register_buffer("z_teacher", torch.zeros(()))
        self.register_buffer("queue_pointer", torch.zeros((), dtype=torch.long))

    def _contrast_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """(B, 1 + m): the example's own slot, then uniform random negatives."""
        batch = indices.shape[0]
        slots = self.memory_student.shape[0]
        negatives = torch.randint(slots, (batch, self.num_negatives), device=indices.device)
        if self.memory == "bank":
            return torch.cat([indices.view(-1, 1), negatives], dim=1)
        return negatives

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        student = self.embed_student(batch.student_features["embedding"].float())
        teacher = self.embed_teacher(batch.teacher_features["embedding"].float())
        if not self.training:  # no memory at evaluation: the term is a training signal only
            return student.new_zeros(())
        contrast = self._contrast_indices(batch.indices)
        bank_teacher = self.memory_teacher[contrast].detach()  # (B, K(+1), d)
        bank_student = self.memory_student[contrast].detach()
        if self.memory == "queue":  # the positive is the other model's current embedding
            bank_teacher = torch.cat([teacher.detach().unsqueeze(1), bank_teacher], dim=1)
            bank_student = torch.cat([student.detach().unsqueeze(1), bank_student], dim=1)
        # Student anchored against teacher representations, and teacher anchored against student ones.
        scores_student = torch.exp(torch.bmm(bank_teacher, student.unsqueeze(2)).squeeze(2) / self.temperature)
        scores_teacher = torch.exp(torch.bmm(bank_student, teacher.unsqueeze(2)).squeeze(2) / self.temperature)
        if self.z_student == 0:
            self.z_student.fill_(scores_student.mean().item() * self.num_train)
            self.z_teacher.fill_(scores_teacher.mean().item() * self.num_train)
        noise = 1.0 / self.num_train
        loss = (nce_loss(scores_student / self.z_student, noise) + nce_loss(scores_teacher / self.z_teacher, noise))
        self._update_memory(batch.indices, student.detach(), teacher.detach())
        return loss

    @torch.no_grad()
    def _update_memory(self, indices: torch.Tensor, student: torch.Tensor, teacher: torch.Tensor) -> None:
        if self.memory == "bank":
            for bank, fresh in ((self.memory_student, student), (self.memory_teacher, teacher)):
                mixed = bank[indices] * self.momentum + fresh * (1 - self.momentum)
                bank[indices] = F.normalize(mixed, dim=1)
            return
        slots = self.memory_student.shape[0]
        positions = (self.queue_pointer + torch.arange(len(indices), device=indices.device)) % slots
        self.memory_student[positions] = student
        self.memory_teacher[positions] = teacher
        self.queue_pointer.copy_((self.queue_pointer + len(indices)) % slots)

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, feat_dim={self.feat_dim}, num_negatives={self.num_negatives}, "
                f"temperature={self.temperature}, momentum={self.momentum}, memory={self.memory}")
