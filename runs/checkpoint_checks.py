"""The checkpoints a run reads, checked before it uses them: its teacher's (teacher.checkpoint, or
teacher.checkpoints) and the one it resumes from. One that cannot be read (missing, truncated, not a
checkpoint) or that holds another model stops the run with one line naming the file and how to continue;
nothing already written is touched.

Honest records: a teacher given by checkpoints of this codebase is the checkpoints' own model, whatever
teacher/model says, so `adopt_teacher_checkpoints` puts their model config in the run's config before the
run folder is claimed; the run's name, hash and record, and the tables made from them, then say which
teacher ran.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from errors import ConfigError
from models.checkpoints import (MODEL_CONFIG_KEY, CheckpointError, model_from_checkpoint, read_checkpoint,
                                state_mismatch)
from runs.notices import notice
from runs.records import RECORD_NAME


def _best_beside(path: Path) -> Path | None:
    """The best-epoch checkpoint in the same run folder, if it is another file and reads."""
    best = path.with_name("best.ckpt")
    if best == path or not best.is_file():
        return None
    try:
        read_checkpoint(best)
    except CheckpointError:
        return None
    return best


def teacher_fix(path: str | Path, key: str) -> str:
    """How to go on when the teacher checkpoint `path` (given as `key`, or trained here when None) fails."""
    path = Path(path)
    folder = path.parent.parent if path.parent.name == "checkpoints" else None
    best = _best_beside(path)
    options = [f"use its run's best epoch instead ({key or 'teacher.checkpoint'}={best})"] if best else []
    if folder is not None and (folder / RECORD_NAME).is_file():
        options.append(f"move its finished run aside (mv {folder} {folder}.damaged) and drop {key} so the teacher "
                       f"is trained again" if key else
                       f"move the teacher's run aside (mv {folder} {folder}.damaged) so it is trained again")
    elif key:
        options.append(f"set {key} to a checkpoint that reads, or drop it to train teacher/model here")
    return "; or ".join(options) or "pass a .ckpt written by train.py"


def resume_fix(path: str | Path) -> str:
    best = _best_beside(Path(path))
    return ("rerun=true starts this run over (the old folder is kept aside)"
            + (f", or resume from its best epoch: cp {best} {path} and pass resume=true again" if best else ""))


def teacher_checkpoints(cfg: DictConfig) -> tuple[str, list[str]]:
    """(the key, the paths) of the checkpoints that the teacher is given, if any."""
    teacher = cfg.teacher
    kind = str(teacher.get("source")) if teacher.get("kind") == "cached" else str(teacher.get("kind"))
    if kind == "single":
        return "teacher.checkpoint", [str(teacher.checkpoint)] if teacher.get("checkpoint") else []
    return "teacher.checkpoints", [str(p) for p in teacher.get("checkpoints") or []]


def adopt_teacher_checkpoints(cfg: DictConfig) -> None:
    """Read the teacher's checkpoints (one that cannot be read stops the run) and, where each carries its model
    config, make teacher.model that config (the feature member's, when the members differ, with every member
    named in teacher.models). Foreign state dicts carry none: teacher/model builds them, so it already is
    what runs."""
    if cfg.get("task") != "distill" or "teacher" not in cfg:
        return
    key, paths = teacher_checkpoints(cfg)
    configs = []
    for path in paths:
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError as error:
            raise error.with_fix(teacher_fix(path, key)) from None
        configs.append(checkpoint.get(MODEL_CONFIG_KEY) if isinstance(checkpoint, Mapping) else None)
    if not configs or any(config is None for config in configs):
        return
    member = int(cfg.teacher.get("feature_member") or 0) if key == "teacher.checkpoints" else 0
    adopted, named = configs[min(member, len(configs) - 1)].get("name"), (cfg.teacher.get("model") or {}).get("name")
    if named and adopted and named != adopted and _named_on_command_line("teacher/model"):
        notice(f"{key} holds a {adopted}, not the teacher/model={named} named beside it: the checkpoint's {adopted} is "
               f"the teacher (and what the run's name and record say); drop teacher/model or name {adopted}")
    with open_dict(cfg):
        cfg.teacher.model = OmegaConf.create(configs[min(member, len(configs) - 1)])
        if len({json.dumps(config, sort_keys=True, default=str) for config in configs}) > 1:
            cfg.teacher.models = [config.get("name") for config in configs]


def adopt_evaluated_model(cfg: DictConfig) -> None:
    """test_only=true ckpt=PATH evaluates the checkpoint's own model: where the checkpoint carries its model config
    (ours do), that config becomes cfg.model (cfg.student for distill_train.py), so the run's first line, folder
    name and record name what is evaluated. A different model named on the command line is refused; a foreign
    state dict carries none and is built as the configured model."""
    if not cfg.get("test_only") or not cfg.get("ckpt"):
        return
    from runs.configs import chosen_on_command_line
    key = "student" if cfg.get("task") == "distill" else "model"
    try:
        checkpoint = read_checkpoint(str(cfg.ckpt))
    except CheckpointError as error:
        raise error.with_fix("pass ckpt= a .ckpt written by train.py or distill_train.py") from None
    config = checkpoint.get(MODEL_CONFIG_KEY) if isinstance(checkpoint, Mapping) else None
    if config is None:
        return
    chosen = chosen_on_command_line(key)
    if chosen is not None and chosen != config.get("name"):
        raise ConfigError(f"{key}={chosen} contradicts ckpt={cfg.ckpt}, which holds a {config.get('name')}: "
                          f"test_only evaluates the checkpoint's own model; drop {key}=")
    with open_dict(cfg):
        cfg[key] = OmegaConf.create(config)


def _named_on_command_line(group: str) -> bool:
    """Whether the command line chose `group` (True where no Hydra app composed the config: tests, sweeps)."""
    from hydra.core.hydra_config import HydraConfig
    from runs.configs import chosen_on_command_line
    return not HydraConfig.initialized() or chosen_on_command_line(group) is not None


def load_teacher_member(path: str, fallback_config: Mapping, key: str | None) -> tuple[nn.Module, dict]:
    """A teacher member from its checkpoint; one that fails names the file and how to go on. `key`: where the
    user gave it (teacher.checkpoint or teacher.checkpoints), None for a teacher trained here."""
    try:
        return model_from_checkpoint(path, fallback_config=fallback_config)
    except CheckpointError as error:
        raise error.with_fix(teacher_fix(path, key)) from None


def check_resumable(path: str, task: nn.Module) -> None:
    """The checkpoint a run resumes from reads and holds exactly this run's weights."""
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        raise error.with_fix(resume_fix(path)) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise CheckpointError(path, f"{path} is not a training checkpoint (it holds no Lightning state)",
                              resume_fix(path))
    details = state_mismatch(task.state_dict(), state)
    if details:
        raise CheckpointError(path, f"{path} holds another model's weights than this run's ({details})",
                              "rerun=true starts this run over (the old folder is kept aside)")


# ----------------------------------------------------------------------------------------------- init_from
INIT_FROM_FIX = ("init_from takes a checkpoint of a run of the same model (and, for distillation, the same method) "
                 "whose weights to start from; for a student's weights alone use student_init_checkpoint")


def check_init_from(cfg: DictConfig) -> None:
    """init_from=PATH reads, and its model is this run's (before anything is built or a teacher is trained)."""
    path = cfg.get("init_from")
    if not path:
        return
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        raise error.with_fix(f"set init_from to a checkpoint that reads ({INIT_FROM_FIX})") from None
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointError(path, f"init_from={path} is not a training checkpoint (it holds no Lightning state)",
                              INIT_FROM_FIX)
    model = (checkpoint.get(MODEL_CONFIG_KEY) or {}).get("name")
    own = (cfg.get("student") if cfg.get("task") == "distill" else cfg.get("model")) or {}
    if model and own.get("name") and model != own.get("name"):
        who = "student" if cfg.get("task") == "distill" else "model"
        raise CheckpointError(path, f"init_from={path} holds a {model}, but this run's {who} is {own.get('name')}",
                              f"set {who}={model}, or {INIT_FROM_FIX}")


def initialise_from(path: str, task: nn.Module) -> dict:
    """Load the trainable state of the checkpoint `path` (the model's weights, a term's trainable parts and
    memories) into `task`; the epochs, optimizer and schedule start afresh. Returns the origin, for the record."""
    checkpoint = read_checkpoint(path)
    state = checkpoint["state_dict"]
    details = state_mismatch(task.state_dict(), state)
    if details:
        raise CheckpointError(path, f"init_from={path} holds another model's weights than this run's ({details})",
                              INIT_FROM_FIX)
    task.load_state_dict(state)
    folder = Path(path).resolve().parent.parent
    return {"checkpoint": str(path), "epoch": checkpoint.get("epoch"), "global_step": checkpoint.get("global_step"),
            "run_dir": str(folder) if (folder / RECORD_NAME).is_file() or (folder / "checkpoints").is_dir() else None}
