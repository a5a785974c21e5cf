"""Per-class means of a teacher feature over the training set, for terms that name one in `teacher_class_means`
(KD++'s ND term: the teacher's class centres, as Knowledge-Distillation-via-ND's emb_fea_distribution.py computes
them: the teacher in eval mode, one pass over the training set under the training augmentation). The augmentation's
draws are seeded (one fixed view per example, as teacher=cached draws them), so every process of a DDP run and
every resume computes the same centres."""
from __future__ import annotations

import logging
from typing import Iterable

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from datamodules.views import ViewDataset
from losses import DistillationObjective
from models.features import FeatureTaps
from models.teachers import FrozenTeacher
from runs.teacher_cache import _device

log = logging.getLogger(__name__)


@torch.no_grad()
def teacher_class_means(model: torch.nn.Module, batches: Iterable, tap: str, num_classes: int,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """(num_classes, feature size): the mean of `model`'s flattened `tap` feature over each class's examples in
    `batches` ((x, y, ...) tuples); a class without examples gets zeros (no training batch ever carries its label)."""
    was_training = model.training
    model.eval().to(device)
    taps = FeatureTaps(model, [tap])
    sums, counts = None, torch.zeros(num_classes, device=device)
    try:
        for x, y, *_ in batches:
            model(x.to(device))
            feature = taps.pop()[tap].flatten(1).float()
            y = y.to(device)
            if sums is None:
                sums = torch.zeros(num_classes, feature.shape[1], device=device)
            sums.index_add_(0, y, feature)
            counts += torch.bincount(y, minlength=num_classes).float()
    finally:
        taps.remove()
        model.to("cpu").train(was_training)
    return (sums / counts.clamp_min(1).unsqueeze(1)).cpu()


def bind_class_means(objective: DistillationObjective, model: torch.nn.Module, batches: Iterable, num_classes: int,
                     device: torch.device | str = "cpu") -> None:
    """Gives each term that names a `teacher_class_means` tap `model`'s per-class means of it over `batches`, before
    the task sets the terms up. Scripts that build a task by hand (benchmark, support matrix) pass their batch."""
    batches = list(batches) if not isinstance(batches, DataLoader) else batches
    for tap in sorted({term.teacher_class_means for term in objective.terms.values()} - {None}):
        means = teacher_class_means(model, batches, tap, num_classes, device)
        for term in objective.terms.values():
            if term.teacher_class_means == tap:
                term.bind_teacher_class_means(means)


def bind_training_class_means(objective: DistillationObjective, teacher: FrozenTeacher, datamodule, cfg: DictConfig
                              ) -> None:
    """bind_class_means over the training set (the datamodule is set up), on the run's device."""
    if all(term.teacher_class_means is None for term in objective.terms.values()):
        return
    dataset = ViewDataset(datamodule.train_set, 1, int(cfg.teacher.get("view_seed") or 0))
    log.info("computing the teacher's per-class means over %d training examples", len(dataset))
    loader = DataLoader(dataset, batch_size=int(cfg.data.get("eval_batch_size") or cfg.data.batch_size),
                        num_workers=int(cfg.data.get("num_workers") or 0))
    bind_class_means(objective, teacher.model, loader, datamodule.num_classes, _device(cfg))
