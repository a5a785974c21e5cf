"""NKD and USKD: Yang et al., "From Knowledge Distillation to Self-Knowledge Distillation: A Unified Approach with
Normalized Loss and Customized Soft Labels", ICCV 2023. Anchor: yzd-v/cls_KD (branch 1.0),
mmcls/models/dis_losses/nkd.py (NKDLoss) and uskd.py (USKDLoss), called by mmcls/models/classifiers/distiller.py.

NKD (normalized KD) splits KD into the target class and the non-target classes. With y the label, p = softmax(z)
the student's and q = softmax(v) the teacher's probabilities, and the non-target distributions taken over the
K - 1 other classes only, at temperature T (the label's logit removed before the softmax):
    NKD = -mean_i q_iy log p_iy  -  gamma T^2 mean_i sum_{k != y} q~_ik log p~_ik,
    q~ = softmax(v_{-y} / T),  p~ = softmax(z_{-y} / T).
The teacher's target probability is a constant (detached). `weight_non_target` is the anchor's gamma.

USKD (universal self-KD) needs no teacher: it builds its soft labels from the student itself.
  target:     the label's soft value is p_y^2 - mean over the batch of p_y^2 + 1 (detached), so
              L_t = -mean_i (p_iy^2 - mean_b p_by^2 + 1) log p_iy;
  weak:       a linear classifier on the globally pooled `tap` feature (the anchor: the neck's pooling of the
              backbone's second-to-last stage), trained on 0.9 one-hot + 0.1 uniform, weighted by mu:
              L_weak = -mean_i sum_k mu t_ik log w_ik,  w = softmax(fc(feature));
  non-target: the classes ranked by w_k / (1 - w_y + 1e-6) + s_k / (1 - s_y + 1e-6) get Zipf values 1/rank; those of
              the non-target classes, renormalised (detached), are the soft labels of the student's non-target
              softmax: L_non = -mean_i sum_{k != y} z~_ik log p~_ik, p~ = softmax(z_{-y}).
  USKD = alpha L_t + beta L_non + L_weak   (alpha = weight_target, beta = weight_non_target, mu = weight_weak).
Deviation kept from the paper, as the code has it: in the rank, s is the student's *log*-probability (the anchor
reuses the name s_i after it became log_softmax), not its probability; `rank_with_probabilities: true` ranks with
the probabilities the paper writes. Under mixing augmentations the anchors read the top-1 (NKD) and the top-2
(USKD) classes of the mixed label, each with its mixing value, as these terms do from `batch.soft_targets`."""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from losses.base import DistillBatch, DistillTerm

ZIPF_EPS = 1e-6  # the anchor's guard in the rank's denominators
WEAK_LABEL = 0.9  # the anchor's weak-supervision target: 0.9 one-hot + 0.1 uniform


def drop_columns(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`values` (B, K) without the columns `labels` (B, m) names in each row (distinct per row), other columns in
    their order: (B, K - m). A stable sort of the label mask, so no host synchronisation as boolean indexing has."""
    is_label = torch.zeros_like(values, dtype=torch.bool).scatter_(1, labels, True)
    kept = torch.sort(is_label.to(torch.uint8), dim=1, stable=True).indices[:, :values.shape[1] - labels.shape[1]]
    return values.gather(1, kept)


def top_labels(batch: DistillBatch, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels (B, m), their label values (B, m)): the label with value 1, or under mixing the `count` largest
    entries of the mixed label (the anchors' torch.max / torch.sort of gt_label.score)."""
    if batch.soft_targets is None:
        labels = batch.targets.view(-1, 1)
        return labels, torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    values, labels = torch.sort(batch.soft_targets.float(), dim=1, descending=True)
    return labels[:, :count], values[:, :count]


class NKDTerm(DistillTerm):
    """Defaults: the anchor's CIFAR-100 config (configs/distillers/cifar100/res34_distill_res18_cifar.py: temp 3,
    gamma 3.5); its ImageNet configs use temp 1, gamma 1.5."""

    def __init__(self, weight: float = 1.0, temperature: float = 3.0, weight_non_target: float = 3.5) -> None:
        super().__init__(weight)
        self.temperature, self.weight_non_target = float(temperature), float(weight_non_target)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        student, teacher = batch.student_logits.float(), batch.teacher_logits.float()
        labels, _ = top_labels(batch, 1)
        log_p_target = F.log_softmax(student, dim=1).gather(1, labels)
        q_target = F.softmax(teacher, dim=1).gather(1, labels).detach()
        target_term = -(q_target * log_p_target).mean()
        t = self.temperature
        log_p_other = F.log_softmax(drop_columns(student, labels) / t, dim=1)
        q_other = F.softmax(drop_columns(teacher, labels) / t, dim=1)
        non_target = -(q_other * log_p_other).sum(dim=1).mean()
        return target_term + self.weight_non_target * t * t * non_target

    def extra_repr(self) -> str:
        return f"weight={self.weight}, temperature={self.temperature}, weight_non_target={self.weight_non_target}"


class USKDTerm(DistillTerm):
    """Teacher-free: it reads the student's logits and its `tap` feature only. Defaults: the anchor's CIFAR-100
    config (configs/distillers/cifar100/res18_sd_cifar.py: alpha 0.1, beta 0.1, mu 0.1, ResNet-18's stage 3, 256
    channels); its ImageNet configs use alpha 1, beta 0.1, mu 0.005."""

    def __init__(self, weight: float = 1.0, weight_target: float = 0.1, weight_non_target: float = 0.1,
                 weight_weak: float = 0.1, tap: str = "stage:-2", rank_with_probabilities: bool = False) -> None:
        super().__init__(weight)
        self.weight_target, self.weight_non_target = float(weight_target), float(weight_non_target)
        self.weight_weak = float(weight_weak)
        self.tap = tap
        self.student_taps = (tap,)
        self.rank_with_probabilities = bool(rank_with_probabilities)
        self.weak_classifier: nn.Linear | None = None

    def setup(self, student_shapes: Mapping[str, torch.Size], teacher_shapes: Mapping[str, torch.Size],
              num_classes: int, num_train: int) -> None:
        self.weak_classifier = nn.Linear(student_shapes[self.tap][1], num_classes)
        # 1/rank for ranks 1..K: a buffer, so it follows the term's device
        self.register_buffer("zipf", 1.0 / torch.arange(1, num_classes + 1, dtype=torch.float32), persistent=False)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        logits = batch.student_logits.float()
        classes = logits.shape[1]
        labels, values = top_labels(batch, 2)
        probs, log_probs = F.softmax(logits, dim=1), F.log_softmax(logits, dim=1)
        p_target, log_p_target = probs.gather(1, labels), log_probs.gather(1, labels)

        squared = p_target ** 2
        soft_target = torch.where(values == 0, torch.zeros_like(squared), squared + values - squared.mean(0, True))
        target_term = -(soft_target.detach() * log_p_target).sum(dim=1).mean()

        feature = batch.student_features[self.tap].float()
        pooled = feature.flatten(2).mean(dim=2) if feature.dim() > 2 else feature  # the neck's global average pool
        weak_logits = self.weak_classifier(pooled)
        weak_log_probs = F.log_softmax(weak_logits, dim=1)
        hard = batch.soft_targets.float() if batch.soft_targets is not None else F.one_hot(labels[:, 0], classes).float()
        weak_label = WEAK_LABEL * hard + (1 - WEAK_LABEL) / classes
        weak_term = -(self.weight_weak * weak_label * weak_log_probs).sum(dim=1).mean()

        with torch.no_grad():
            weak = weak_logits.softmax(dim=1)
            mine, mine_target = (probs, p_target) if self.rank_with_probabilities else (log_probs, log_p_target)
            score = (weak / (1 - weak.gather(1, labels).sum(1, True) + ZIPF_EPS)
                     + mine / (1 - mine_target.sum(1, True) + ZIPF_EPS))
            position = torch.argsort(torch.argsort(score, dim=1, descending=True), dim=1)  # 0 for the top score
            zipf = drop_columns(self.zipf[position], labels)
            zipf = zipf / zipf.sum(dim=1, keepdim=True)
        non_target = -(zipf * F.log_softmax(drop_columns(logits, labels), dim=1)).sum(dim=1).mean()
        return self.weight_target * target_term + self.weight_non_target * non_target + weak_term

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, weight_target={self.weight_target}, weight_non_target="
                f"{self.weight_non_target}, weight_weak={self.weight_weak}, tap={self.tap!r}")
