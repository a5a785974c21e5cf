"""Which process does what when a run trains on several processes (Lightning's DDP, `trainer=ddp`).

Lightning launches DDP by running the same command once per device (its own launcher starts the other
processes of a node when the fit begins; on several nodes the same command runs on each node, with NODE_RANK
set). So every process executes the whole run: these rules keep each piece of work done exactly once.

- The first process (rank 0: every rank variable of the launch unset or 0) owns the run folders: it claims
  them (a rerun's move aside, the resume decision), holds their locks, and writes records and checkpoints.
  The other processes follow: the same folder and resume checkpoint, nothing moved or written.
- A model trained inside a multi-process run (a teacher, a baseline student) is trained once, by the first
  process, with a single-device trainer of the same kind (`single_process_trainer`), under its run-folder
  lock, before the DDP fit starts. The other processes wait for its record and load its checkpoint (with
  Lightning's launcher they start only when the fit begins, so it is already there; other nodes wait).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from omegaconf import DictConfig, open_dict

from runs.records import read_record

log = logging.getLogger(__name__)

# The variables that carry a process's rank under Lightning's launcher, torchrun, SLURM and LSF.
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK")
# Trainer keys that make a trainer multi-process, dropped from a single-process copy.
MULTI_PROCESS_KEYS = ("strategy", "num_nodes", "sync_batchnorm")
RECORD_POLL_S = 2.0


def is_first_process() -> bool:
    """Whether this is rank 0 of a multi-process launch, or a process that was not launched as one."""
    return all(int(os.environ.get(name) or 0) == 0 for name in RANK_VARIABLES)


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


def wait_for_record(folder: Path) -> dict:
    """The record of `folder` once the first process has written it (a model it trains before the fit)."""
    record = read_record(folder)
    if record is None:
        log.info("waiting for the first process to finish %s", folder)
    while record is None:
        time.sleep(RECORD_POLL_S)
        record = read_record(folder)
    return record
