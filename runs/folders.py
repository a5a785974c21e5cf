"""Run folders: where a config's run lives and what to do with it.

A run's folder is ${paths.output_dir}/<task>/<run_name>-<config hash>. The hash covers only what changes
the result (not paths, loggers, callbacks, progress bars or the resume flags), so the same experiment
always maps to the same folder: a finished one is reused (this is how teachers and baselines are cached),
a killed one resumes with resume=true, and nothing already written is overwritten.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from errors import UserError
from runs.processes import follows_first_process
from runs.records import aside_folder, read_record

LAST_CHECKPOINT = "checkpoints/last.ckpt"
HPC_CHECKPOINT = re.compile(r"hpc_ckpt_(\d+)\.ckpt")  # Lightning's SLURM checkpoints (hpc_save_path), in the folder
# Config keys that do not change what a run computes.
NOT_HASHED = ("run_dir", "run_name", "resume", "rerun", "paths", "logger", "callbacks", "hydra", "verbose",
              "compile", "channels_last",  # speed settings: the same arithmetic, faster
              "published")  # an experiment cell's published result: what to expect, not what to compute
NOT_HASHED_NESTED = {"trainer": ("enable_progress_bar", "log_every_n_steps", "enable_model_summary"),
                     "data": ("num_workers", "pin_memory", "data_dir"),
                     "teacher": ("cache",)}  # a cached teacher answers with the very logits it would compute
# Opt-in switches that change the random draws: hashed only when on, so runs from before they existed keep
# their folders.
HASHED_WHEN_ON = {"data": ("device_resident", "mean", "std")}
# Top-level keys added later, hashed only away from their default for the same reason.
HASHED_WHEN_NOT_DEFAULT = {"pre_training_scale": 1.0, "student_init_checkpoint": None, "init_from": None}
# Model options added later, hashed only away from their default, in every model node (model, student,
# teacher.model), for the same reason.
MODEL_OPTIONS_HASHED_WHEN_NOT_DEFAULT = {"shortcut": "B"}


class RunFolderError(UserError, RuntimeError):
    pass


def hashed_view(cfg: DictConfig) -> dict:
    """The resolved values that define the run (for the hash and the record)."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for key in NOT_HASHED:
        resolved.pop(key, None)
    for group, keys in NOT_HASHED_NESTED.items():
        for key in keys:
            if isinstance(resolved.get(group), dict):
                resolved[group].pop(key, None)
    for group, keys in HASHED_WHEN_ON.items():
        for key in keys:
            if isinstance(resolved.get(group), dict) and not resolved[group].get(key):
                resolved[group].pop(key, None)
    for key, default in HASHED_WHEN_NOT_DEFAULT.items():
        if resolved.get(key, default) == default:
            resolved.pop(key, None)
    teacher = resolved.get("teacher") if isinstance(resolved.get("teacher"), dict) else {}
    for node in (resolved.get("model"), resolved.get("student"), teacher.get("model")):
        for key, default in MODEL_OPTIONS_HASHED_WHEN_NOT_DEFAULT.items():
            if isinstance(node, dict) and node.get(key, default) == default:
                node.pop(key, None)
    return resolved


def config_digest(cfg: DictConfig) -> str:
    return hashlib.sha256(json.dumps(hashed_view(cfg), sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_folder(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir) / cfg.task / f"{cfg.run_name}-{config_digest(cfg)}"


@contextmanager
def run_folder_lock(cfg: DictConfig) -> Iterator[None]:
    """One process at a time works on a run folder: parallel sweep trials that need the same teacher train
    it once, and the others wait, then reuse its record. DDP's other ranks skip it (rank 0 holds it)."""
    if follows_first_process(cfg.trainer):
        yield
        return
    folder = run_folder(cfg)
    locks = Path(cfg.paths.output_dir) / ".locks" / str(cfg.task)  # apart from the runs: a lock is no result
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{folder.name}.lock")):
        yield


def resume_point(folder: Path) -> Path | None:
    """The checkpoint an unfinished run in `folder` continues from: its last epoch's checkpoint, else (Slurm
    pre-empted it before an epoch finished) Lightning's newest HPC checkpoint, else None."""
    last = folder / LAST_CHECKPOINT
    if last.is_file():
        return last
    hpc = [(int(m.group(1)), p) for p in folder.glob("hpc_ckpt_*.ckpt") if (m := HPC_CHECKPOINT.fullmatch(p.name))]
    return max(hpc)[1] if hpc else None


def resume_settings(cfg: DictConfig) -> tuple[bool | str, bool]:
    """(resume, rerun) as this process applies them: as given, except in a job that Slurm requeued (runs/plugins.py),
    which continues its unfinished run by itself (resume=auto) and does not move it aside a second time."""
    from runs.plugins import requeued_by_slurm  # Lightning's cluster detection: loaded only when a run starts
    return ("auto", False) if requeued_by_slurm() else (cfg.resume, bool(cfg.rerun))


def claim_run_folder(cfg: DictConfig) -> tuple[Path, dict | None, str | None]:
    """Decide what to do with this config's folder: (folder, finished record or None, checkpoint to resume).

    - finished and not rerun: return its record (the caller reuses it);
    - rerun: move the old folder aside (kept, never deleted) and start fresh;
    - unfinished with resume=true: resume from its last checkpoint (resume=auto: if there is one, else start);
    - unfinished without resume: stop and say how to continue.
    The first process of a multi-process run decides; the others follow it (runs/processes.py).
    """
    if follows_first_process(cfg.trainer):
        return follow_run_folder(cfg)
    folder = run_folder(cfg)
    resume, rerun = resume_settings(cfg)
    record = read_record(folder)
    last = resume_point(folder)
    if folder.exists() and rerun:
        folder.rename(aside_folder(folder))
        return folder, None, None
    if record is not None:
        return folder, record, None
    if resume == "auto":  # sweeps, models trained inside a run, requeued jobs: continue what there is to continue
        return folder, None, str(last) if last else None
    if resume:
        if last is None:
            raise RunFolderError(f"resume=true but {folder} holds no checkpoint to resume from (looked for "
                                 f"{folder / LAST_CHECKPOINT}): this run never finished an epoch, so there is nothing "
                                 f"of it to continue; drop resume=true to start it (a teacher or baseline that it "
                                 f"trains first continues from its own last checkpoint by itself)")
        return folder, None, str(last)
    if last is not None:
        raise RunFolderError(f"{folder} holds an unfinished run of this exact config; pass resume=true to "
                             f"continue it from {last}, or rerun=true to start over (the old folder is kept)")
    return folder, None, None


def follow_run_folder(cfg: DictConfig) -> tuple[Path, dict | None, str | None]:
    """What a process other than the first does with a multi-process run's folder: the first process's
    decision, made without moving or refusing anything."""
    folder = run_folder(cfg)
    resume, rerun = resume_settings(cfg)
    if rerun:  # the first process has moved the old folder aside and starts afresh
        return folder, None, None
    record, last = read_record(folder), resume_point(folder)
    return folder, record, str(last) if record is None and resume and last else None


def git_state() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(status) if status is not None else None}


def committed_state(allow_dirty: bool = False) -> dict[str, Any]:
    """git_state() of a run that makes results for the repository: a tree with uncommitted changes to tracked files
    stops it (results/ holds what a commit's command makes, so a rerun of the same config matches), unless
    `allow_dirty` (a trial, whose tables then say so)."""
    state = git_state()
    if state["git_dirty"] and not allow_dirty:
        raise UserError("the working tree has uncommitted changes to tracked files: results made now would match no "
                        "commit; commit or stash them first (--allow-dirty makes a trial table that says so)")
    return state

