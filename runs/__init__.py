"""Orchestration: run folders and records, teacher training and caching, sweeps, summaries.

Imported before torch by every entry point (train.py, distill_train.py, ray_runner.py and its trials, the
scripts that train), so the setting below reaches the OpenMP runtime that torch loads: a run uses torch's
default of one thread per core, and its threads sleep while they wait for work (OMP_WAIT_POLICY=PASSIVE)
instead of spinning. Spinning threads of runs side by side (a shared machine, a sweep's trials, several
terminals) take the cores from the threads with work: on 2 busy cores a quickstart KD step took 407 ms instead
of 30 (README, Speed; scripts/benchmark_sharing.py). A value already in the environment is kept.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
