"""MLKD, multi-level logit distillation (Jin et al., CVPR 2023, "Multi-Level Logit Distillation"), as its released
code computes it: Jin-Ying/Multi-Level-Logit-Distillation mdistiller/distillers/KD_ours.py (`KD_ours`, trained by
tools/train_ours.py with the AugTrainer), and the LSKD anchor's copy with logit standardization,
sunshangquan/logit-standardization-KD mdistiller/distillers/MLKD.py.

Every training example comes as a weak and a strong augmented view (datamodules/two_views.py; the terms declare
`train_views = ("strong",)`); teacher and student see each. With temperatures T_1..T_5 (the anchor's
cfg.KD.TEMPERATURE, then 3, 5, 2 and 6), softmax p = softmax(z / T), the teacher's weak-view confidence c_i =
max_k softmax(v_i)_k (at T 1) and its class confidence s_k = sum_i softmax(v_i)_k over the batch:
- instance level (`MLKDInstanceTerm`, the anchor's loss_kd): sum over T of T^2 KL(p_teacher || p_student), on the
  weak view masked by c_i <= median(c), plus on the strong view unmasked;
- batch level (`MLKDBatchTerm`, loss_bc): sum over T of ||P_t P_t^T - P_s P_s^T||^2 / B on the weak view, masked
  like the instance level (P: the B x K matrix of p);
- class level (`MLKDClassTerm`, loss_cc): sum over T of ||P_t^T P_t - P_s^T P_s||^2 / K on the weak view, masked
  by s_k <= median(s);
- cross-entropy on both views, summed (`TwoViewCrossEntropyTerm`, loss_ce).
The anchor weighs CE by cfg.KD.LOSS.CE_WEIGHT (0.1) and each level by KD_WEIGHT (0.9): each term's `weight` here.
Medians are numpy's percentile(., 50) (linear interpolation: torch.quantile's default), kept rows those at or below
it (`le`): the less confident half.

Kept as the anchor's code computes it (its published numbers came from it), each with an option for the other form:
- masking="anchor": the anchor's kd_loss/bc_loss/cc_loss reduce to a scalar before `* mask` (their `reduce=False`
  is commented out), so `(loss * mask).mean()` is the loss times the fraction of kept rows (classes): no example
  is dropped. masking="per_row" computes the commented-out reduce=False form (each row's, or each matrix column's,
  loss times its mask, then the mean); masking="none" leaves the mask out.
- anchor_strong_sum=true: the anchor's strong-view instance sum takes its 4th and 5th temperatures (2 and 6) on
  the weak view (the lines repeat logits_*_weak); false: every temperature on the strong view.
- strong_view=false (batch and class levels): the anchor computes loss_cc_strong and loss_bc_strong but leaves them
  out of its losses_dict; true adds the strong view's level loss (the batch level's masked by the weak view's
  confidences, as the anchor's loss_bc_strong is).
- standardize (every level): logit standardization (losses/standardize.py) before the temperature; the LSKD anchor
  applies it to the instance level only (its kd_loss takes logit_stand, cc_loss and bc_loss do not), and never to
  the confidences of the masks (softmax of the raw weak teacher logits).
Under DDP the medians, the batch matrices and the class matrices cover the global batch (losses/distributed.py), so
P processes with batch B compute what one process with batch P*B does; the anchor's DataParallel would split them
per GPU, which a 1-GPU CIFAR run never does.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.distributed import gather_rows, gather_rows_with_grad, sum_over_processes
from losses.standardize import standardize_logits

# KD_ours.forward_train: cfg.KD.TEMPERATURE (mdistiller's default 4), then 3.0, 5.0, 2.0, 6.0.
TEMPERATURES = (4.0, 3.0, 5.0, 2.0, 6.0)
MASKINGS = ("anchor", "per_row", "none")
STRONG = "strong"


def check_temperatures(temperatures: Sequence[float], term: str) -> tuple[float, ...]:
    values = tuple(float(t) for t in temperatures)
    if not values or any(t <= 0 for t in values):
        raise ConfigError(f"kd.terms.{term}.temperatures must be a non-empty list of positive numbers, got "
                          f"{list(temperatures)}; e.g. [4.0, 3.0, 5.0, 2.0, 6.0] (MLKD's)")
    return values


def check_masking(masking: str, term: str) -> str:
    if masking not in MASKINGS:
        raise ConfigError(f"kd.terms.{term}.masking must be one of {list(MASKINGS)}, got {masking!r}")
    return masking


def teacher_confidence_masks(teacher_weak_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(this process's row mask, the global batch's row mask, class mask): the teacher's weak-view confidences at or
    below their median over the global batch (rows), its class confidences at or below their median (classes)."""
    probs = F.softmax(teacher_weak_logits.detach().float(), dim=1)
    confidence = probs.max(dim=1).values
    (every_confidence,), _ = gather_rows(confidence)
    row_mask = confidence <= torch.quantile(every_confidence, 0.5)
    class_confidence = sum_over_processes(probs.sum(dim=0))
    class_mask = class_confidence <= torch.quantile(class_confidence, 0.5)
    return row_mask, every_confidence <= torch.quantile(every_confidence, 0.5), class_mask


def soft_probabilities(logits: torch.Tensor, temperature: float, standardize: bool) -> torch.Tensor:
    logits = logits.float()
    return F.softmax((standardize_logits(logits) if standardize else logits) / temperature, dim=1)


def kl_per_row(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
               standardize: bool) -> torch.Tensor:
    """T^2 KL(softmax(v/T) || softmax(z/T)) of each row (the anchor's kd_loss with reduce=False)."""
    student, teacher = student_logits.float(), teacher_logits.float()
    if standardize:
        student, teacher = standardize_logits(student), standardize_logits(teacher)
    log_student = F.log_softmax(student / temperature, dim=1)
    log_teacher = F.log_softmax(teacher / temperature, dim=1)
    return F.kl_div(log_student, log_teacher, reduction="none", log_target=True).sum(dim=1) * temperature ** 2


class _MLKDTerm(DistillTerm):
    train_views = (STRONG,)

    def __init__(self, weight: float = 1.0, temperatures: Sequence[float] = TEMPERATURES, masking: str = "anchor",
                 standardize: bool = False) -> None:
        super().__init__(weight)
        name = type(self).__name__
        self.temperatures = check_temperatures(temperatures, name)
        self.masking = check_masking(masking, name)
        self.standardize = bool(standardize)

    def masked(self, loss: torch.Tensor, elementwise: torch.Tensor, mask: torch.Tensor,
               kept: torch.Tensor | None = None) -> torch.Tensor:
        """One temperature's loss under `masking` (the module's docstring): `loss` reduced as the anchor reduces it,
        `elementwise` the rows (or matrix entries) it reduces, `mask` over them, `kept` the mask whose kept fraction
        the anchor's form multiplies by (default `mask`)."""
        if self.masking == "anchor":
            return loss * (mask if kept is None else kept).float().mean()
        if self.masking == "per_row":
            return (elementwise * mask).mean()
        return loss

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, temperatures={list(self.temperatures)}, masking={self.masking}, "
                f"standardize={self.standardize}")


class MLKDInstanceTerm(_MLKDTerm):
    """The instance level (the anchor's loss_kd): see the module docstring."""

    def __init__(self, weight: float = 1.0, temperatures: Sequence[float] = TEMPERATURES, masking: str = "anchor",
                 standardize: bool = False, anchor_strong_sum: bool = True) -> None:
        super().__init__(weight, temperatures, masking, standardize)
        self.anchor_strong_sum = bool(anchor_strong_sum)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        weak, strong = batch, batch.views[STRONG]
        row_mask, every_row_mask, _ = teacher_confidence_masks(weak.teacher_logits)
        total = weak.student_logits.new_zeros((), dtype=torch.float32)
        for position, temperature in enumerate(self.temperatures):
            rows = kl_per_row(weak.student_logits, weak.teacher_logits, temperature, self.standardize)
            total = total + self.masked(rows.mean(), rows, row_mask, kept=every_row_mask)
            view = weak if self.anchor_strong_sum and position >= 3 else strong
            total = total + kl_per_row(view.student_logits, view.teacher_logits, temperature, self.standardize).mean()
        return total

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, anchor_strong_sum={self.anchor_strong_sum}"


class _RelationLevel(_MLKDTerm):
    """A level that compares Gram matrices of the softened predictions over the global batch."""

    def __init__(self, weight: float = 1.0, temperatures: Sequence[float] = TEMPERATURES, masking: str = "anchor",
                 standardize: bool = False, strong_view: bool = False) -> None:
        super().__init__(weight, temperatures, masking, standardize)
        self.strong_view = bool(strong_view)

    def gram(self, probs: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def level(self, view: DistillBatch, mask: torch.Tensor) -> torch.Tensor:
        """The level's sum over the temperatures on one view, with `mask` over the Gram matrix's columns."""
        student = gather_rows_with_grad(view.student_logits.float())
        (teacher,), _ = gather_rows(view.teacher_logits.float())
        total = student.new_zeros(())
        for temperature in self.temperatures:
            difference = (self.gram(soft_probabilities(teacher, temperature, self.standardize))
                          - self.gram(soft_probabilities(student, temperature, self.standardize))) ** 2
            scaled = difference / len(difference)  # / B (batch level) or / K (class level)
            total = total + self.masked(scaled.sum(), scaled, mask)
        return total

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        mask = self.mask(batch)
        value = self.level(batch, mask)
        return value + self.level(batch.views[STRONG], mask) if self.strong_view else value

    def mask(self, batch: DistillBatch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, strong_view={self.strong_view}"


class MLKDBatchTerm(_RelationLevel):
    """The batch level (the anchor's loss_bc): B x B similarities P P^T, masked by the teacher's row confidences."""

    def gram(self, probs: torch.Tensor) -> torch.Tensor:
        return probs @ probs.T

    def mask(self, batch: DistillBatch) -> torch.Tensor:
        return teacher_confidence_masks(batch.teacher_logits)[1]


class MLKDClassTerm(_RelationLevel):
    """The class level (the anchor's loss_cc): K x K correlations P^T P, masked by the teacher's class confidences."""

    def gram(self, probs: torch.Tensor) -> torch.Tensor:
        return probs.T @ probs

    def mask(self, batch: DistillBatch) -> torch.Tensor:
        return teacher_confidence_masks(batch.teacher_logits)[2]


class TwoViewCrossEntropyTerm(DistillTerm):
    """Cross-entropy on the labels of the weak and of the strong view, summed (the anchor's loss_ce before its
    CE_WEIGHT)."""

    train_views = (STRONG,)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        strong = batch.views[STRONG]
        return (F.cross_entropy(batch.student_logits.float(), batch.targets)
                + F.cross_entropy(strong.student_logits.float(), strong.targets))
