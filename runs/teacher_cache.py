"""teacher=cached: the teacher's logits on every training example (in `views` fixed augmented views each)
computed once and stored under ${paths.output_dir}/teacher_cache/, keyed by the teacher checkpoints'
contents, the training data (dataset, split, pool) and the augmentation draw (transform, views, view seed),
so a cache is never reused for other data or other views."""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from datamodules.views import VIEW_SEEDING, ViewDataset
from errors import ConfigError
from models.teachers import CachedTeacher, FrozenTeacher
from tasks.finite import NonFiniteError

log = logging.getLogger(__name__)

# Data settings that do not change which examples or pixels the teacher sees.
NOT_DATA_IDENTITY = ("data_dir", "batch_size", "eval_batch_size", "num_workers", "pin_memory", "seed", "download")
AUGMENTED_VIEWS = 10  # default views per example when the training transform is random


def file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(cfg: DictConfig, checkpoints: list[str], datamodule, views: int, seed: int, kind: str
              ) -> tuple[str, dict]:
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items() if k not in NOT_DATA_IDENTITY}
    pool = datamodule.train_set.indices
    material: dict[str, Any] = {
        "teacher": [file_digest(path) for path in checkpoints], "teacher_kind": kind,
        "data": data, "pool": hashlib.sha256(pool.tobytes()).hexdigest(), "pool_size": len(pool),
        "transform": repr(datamodule.train_transform), "views": views, "view_seed": seed,
        "view_seeding": VIEW_SEEDING}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16], material


def _device(cfg: DictConfig) -> torch.device:
    wants_cpu = str(cfg.trainer.get("accelerator", "auto")) == "cpu"
    return torch.device("cuda" if torch.cuda.is_available() and not wants_cpu else "cpu")


@torch.no_grad()
def _compute(inner: FrozenTeacher, dataset, num_train: int, views: int, cfg: DictConfig) -> torch.Tensor:
    device = _device(cfg)
    inner.to(device)
    loader = DataLoader(dataset, batch_size=int(cfg.data.get("eval_batch_size") or cfg.data.batch_size),
                        num_workers=int(cfg.data.get("num_workers") or 0))
    table = None
    for x, _, encoded in loader:
        example, view = torch.div(encoded, views, rounding_mode="floor"), encoded % views
        logits, _ = inner(x.to(device), example.to(device))
        if table is None:
            table = torch.full((num_train, views, logits.shape[1]), float("nan"))
        table[example, view] = logits.float().cpu()
    inner.to("cpu")
    return table


STUDENT_VIEWS = ("fixed", "fresh")


def check_finite(table: torch.Tensor, examples, who: str, fix: str) -> None:
    """Every stored output of the training examples is finite (NaN only marks examples outside the pool)."""
    finite = torch.isfinite(table[torch.as_tensor(examples, dtype=torch.long)]).all(dim=-1).all(dim=-1)
    if not bool(finite.all()):
        bad = torch.as_tensor(examples)[~finite]
        raise NonFiniteError(f"{who} gives non-finite outputs (NaN or infinite) on {len(bad)} of {len(finite)} "
                             f"training examples (e.g. example {int(bad[0])}); {fix}")


def cached_teacher(inner: FrozenTeacher, datamodule, cfg: DictConfig, checkpoints: list[str], kind: str
                   ) -> tuple[CachedTeacher, dict]:
    """`teacher.student_views` (not in teacher/cached.yaml, so earlier runs keep their folders): "fixed" (default)
    trains the student on the cached views themselves; "fresh" caches one augmented view per example and trains
    the student on freshly augmented inputs, answered with that view's outputs, as comparative KD's CachedSubset
    (alextxu/ckd dataset/util.py) does: one teacher call per example, then the training transform at every access."""
    student_views = cfg.teacher.get("student_views", "fixed")
    if student_views not in STUDENT_VIEWS:
        raise ConfigError(f"teacher.student_views must be one of {list(STUDENT_VIEWS)}, got {student_views!r}")
    fresh = student_views == "fresh"
    if fresh and cfg.teacher.get("views") not in (None, 1):
        raise ConfigError(f"teacher.student_views=fresh caches one view per example, but teacher.views="
                          f"{cfg.teacher.views}; set teacher.views=null (or 1), or teacher.student_views=fixed")
    views = 1 if fresh else cfg.teacher.get("views") or (AUGMENTED_VIEWS if datamodule.augments else 1)
    seed = int(cfg.teacher.get("view_seed") or 0)
    dataset = ViewDataset(datamodule.train_set, 1, seed) if fresh else datamodule.use_fixed_views(int(views), seed)
    key, material = cache_key(cfg, checkpoints, datamodule, int(views), seed, kind)
    path = Path(cfg.paths.output_dir) / "teacher_cache" / f"{key}.pt"
    num_train = len(dataset.base)
    if path.is_file():
        table, calls = torch.load(path, map_location="cpu", weights_only=True)["logits"], 0
        log.info("teacher outputs reused from %s", path)
        check_finite(table, dataset.indices, f"the teacher cache {path}", f"delete {path} to compute it again")
    else:
        log.info("caching the teacher's outputs on %d examples x %d views in %s", len(dataset.examples), views, path)
        table, calls = _compute(inner, dataset, num_train, int(views), cfg), len(dataset)
        check_finite(table, dataset.indices, f"the teacher ({', '.join(checkpoints)})",  # before it is stored
                     "it diverged in training or its file is damaged; train it again or use another checkpoint")
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        torch.save({"logits": table, "key": material}, partial)
        os.replace(partial, path)  # a killed run never leaves a half-written cache behind
    info = {"teacher_cache": {"path": str(path), "reused": calls == 0, "views": int(views),
                              "examples": len(dataset.examples), "student_views": student_views}}
    return CachedTeacher(inner, table, calls), info
