"""Metrics, all from torchmetrics: accuracy, calibration, and teacher-student fidelity."""
from __future__ import annotations

import torch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError
from torchmetrics.regression import KLDivergence

# gnosis (the fidelity paper's code) bins confidence in 10 equal-width bins.
ECE_BINS = 10


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
               "ece": MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1")}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)


class FidelityMetrics(MetricCollection):
    """Student-teacher fidelity: top-1 agreement, KL(teacher || student) per example, teacher top-1."""

    def __init__(self, num_classes: int, prefix: str) -> None:
        super().__init__({"agreement": MulticlassAccuracy(num_classes, average="micro"),
                          "kl": KLDivergence(log_prob=True, reduction="mean"),
                          "teacher_top1": MulticlassAccuracy(num_classes, average="micro")},
                         prefix=prefix, compute_groups=False)

    def update(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor) -> None:
        student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
        self["agreement"].update(student_logits, teacher_logits.argmax(dim=1))
        self["kl"].update(teacher_logits.log_softmax(dim=1), student_logits.log_softmax(dim=1))
        self["teacher_top1"].update(teacher_logits, targets)
