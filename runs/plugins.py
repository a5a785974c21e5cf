"""The Lightning plugins every Trainer of a run gets, and how a run continues after a cluster stops it.

One place for both, so cluster work (e.g. a Slurm launcher) adds its environment here:

- `trainer_plugins(cfg)`: the `plugins=` of every Trainer runs/training.py builds. Today: `AtomicCheckpointIO`,
  which writes checkpoints next to their final place and renames them in (runs/writing.py), so a full disk
  or a kill during a write leaves the previous `last.ckpt` intact. Lightning's own writer goes through an
  fsspec transaction whose temporary file lives in the system's temporary folder; its final move can cross
  file systems and become a copy that a full disk cuts short. A cluster environment (e.g. Lightning's
  `SLURMEnvironment(requeue_signal=...)`) would be appended here.
- Slurm pre-emption follows Lightning's own convention, unchanged: where a job runs under Slurm (Lightning
  detects `SLURMEnvironment` itself, with auto_requeue on), the pre-emption signal (SIGUSR1; ask Slurm for it
  with `#SBATCH --signal=SIGUSR1@90`) makes Lightning save `hpc_ckpt_N.ckpt` in the run folder and
  `scontrol requeue` the job; Slurm then sends SIGTERM, which stops the run honestly (runs/stops.py). When the
  requeued job runs the same command again (`SLURM_RESTART_COUNT` > 0, `requeued_by_slurm`), the run folder
  continues by itself (runs/folders.py `claim_run_folder`): resume=auto and no second rerun, from
  `resume_point`: the last epoch's `last.ckpt` (an exact resume, as an unkilled run), or, when no epoch had
  finished, Lightning's newest HPC checkpoint.
"""
from __future__ import annotations

import io
import os
from typing import Any

from lightning_fabric.plugins.environments import SLURMEnvironment
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from omegaconf import DictConfig

from runs.writing import write_atomically



class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's TorchCheckpointIO whose files are written by `write_atomically` (loading unchanged)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO takes no storage_options")
        import torch
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)  # serialised first, as Lightning does: an object that fails touches no file
        write_atomically(path, buffer.getvalue())


def trainer_plugins(cfg: DictConfig) -> list:
    """The `plugins=` of a run's Trainer (see the module docstring)."""
    return [AtomicCheckpointIO()]


def requeued_by_slurm() -> bool:
    """Whether this process is a Slurm job that Slurm requeued (after Lightning's auto-requeue on pre-emption,
    or the cluster's own), running its command again."""
    return SLURMEnvironment.detect() and int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
