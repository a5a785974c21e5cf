"""Per-class means of a teacher feature over the training set, for terms that name one in `teacher_class_means`
(KD++'s ND term: the teacher's class centres, as Knowledge-Distillation-via-ND's emb_fea_distribution.py computes
them: the teacher in eval mode, one pass over the training set under the training augmentation). The augmentation's
draws are seeded (one fixed view per example, as teacher=cached draws them), so every process of a DDP run and
every resume computes the same centres."""
from __future__ import annotations

import logging

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
def teacher_class_means(model: torch.nn.Module, dataset, tap: str, num_classes: int, cfg: DictConfig
                        ) -> torch.Tensor:
    """(num_classes, feature size): the mean of `model`'s flattened `tap` feature over each class's examples of
    `dataset`; a class without examples gets zeros (no training batch ever carries its label)."""
    device = _device(cfg)
    was_training = model.training
    model.eval().to(device)
    taps = FeatureTaps(model, [tap])
    loader = DataLoader(dataset, batch_size=int(cfg.data.get("eval_batch_size") or cfg.data.batch_size),
                        num_workers=int(cfg.data.get("num_workers") or 0))
    sums, counts = None, torch.zeros(num_classes, device=device)
    try:
        for x, y, _ in loader:
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


def bind_class_means(objective: DistillationObjective, teacher: FrozenTeacher, datamodule, cfg: DictConfig) -> None:
    """Gives each term that names a `teacher_class_means` tap the teacher's per-class means of it (before the
    task sets the terms up). The datamodule is set up."""
    wanted = {term.teacher_class_means for term in objective.terms.values()} - {None}
    if not wanted:
        return
    dataset = ViewDataset(datamodule.train_set, 1, int(cfg.teacher.get("view_seed") or 0))
    for tap in sorted(wanted):
        log.info("computing the teacher's per-class means of '%s' over %d training examples", tap, len(dataset))
        means = teacher_class_means(teacher.model, dataset, tap, datamodule.num_classes, cfg)
        for term in objective.terms.values():
            if term.teacher_class_means == tap:
                term.bind_teacher_class_means(means)
