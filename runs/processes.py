"""Which process does what when a run trains on several processes (Lightning's DDP, `trainer=ddp`).

Lightning launches DDP by running the same command once per device (its own launcher starts the other
processes of a node when the fit begins; on several nodes the same command runs on each node, with NODE_RANK
set). So every process executes the whole run: these rules keep each piece of work done exactly once.

- In a multi-process run, the first process (rank 0: every rank variable of the launch unset or 0) owns the
  run folder: it claims it (a rerun's move aside, the resume decision), holds its lock, and writes the
  record and checkpoints. The other processes follow (`follows_first_process`): the same folder and resume
  checkpoint, nothing moved or written.
- A model trained inside a multi-process run (a teacher, a baseline student) is a single-process run, on one
  device of the same kind (`single_process_trainer`), trained before the DDP fit starts. Every process asks
  for it under its run-folder lock, so it is trained once, by the process that takes the lock first (with
  Lightning's launcher the first process: the others start only when the fit begins), and the others reuse
  its record and checkpoint. Processes of single-process runs never follow, whatever their rank variables say
  (e.g. Ray workers on a SLURM allocation).
"""
from __future__ import annotations

import os

from omegaconf import DictConfig, open_dict

# The variables that carry a process's rank under Lightning's launcher, torchrun, SLURM and LSF.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
# Trainer keys that make a trainer multi-process, dropped from a single-process copy.
MULTI_PROCESS_KEYS = ("strategy", "num_nodes", "sync_batchnorm")


def is_first_process() -> bool:
    """Whether this is rank 0 of a multi-process launch, or a process that was not launched as one."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


def follows_first_process(trainer: DictConfig) -> bool:
    """Whether this process only follows the first one in a run with these trainer settings."""
    return is_multi_process(trainer) and not is_first_process()


def is_multi_process(trainer: DictConfig) -> bool:
    """Whether these trainer settings run on more than one process: several devices (a count, a list, -1
    or auto) or several nodes."""
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1) or 1
    one_device = devices in (1, "1") or (not isinstance(devices, (int, str)) and len(devices) == 1)
    return int(nodes) > 1 or not one_device


def single_process_trainer(trainer: DictConfig) -> DictConfig:
    """`trainer` on one device of the same accelerator and precision (no strategy, nodes or synchronised
    BatchNorm): the trainer of a model trained inside a multi-process run. Unchanged if already single; so
    a DDP run reuses the teacher that `trainer=gpu` (one GPU, the same precision) trained, and vice versa."""
    if not is_multi_process(trainer):
        return trainer
    single = trainer.copy()
    with open_dict(single):
        single.devices = 1
        for key in MULTI_PROCESS_KEYS:
            single.pop(key, None)
    return single
