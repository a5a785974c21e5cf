"""Sweeps through Hydra's multirun beside the Ray runner: the submitit launcher (Slurm, and its local executor for a
machine without Slurm), Hydra's Optuna sweeper, and the Slurm trainer preset's Lightning environment. The plugins
are optional: each test skips when its package is missing."""
from __future__ import annotations

import json
import pickle
import signal
from pathlib import Path

import pytest
import yaml
from hydra.utils import instantiate

from runs.objective import sweep_objective
from tests.helpers import TINY, compose_config


def _records(outputs: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((outputs / "train").glob("*/record.json"))]


def test_the_slurm_presets_carry_partition_gpus_time_and_nodes(monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = compose_config("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2",
                                   "hydra.launcher.gpus_per_node=4", "hydra.launcher.timeout_min=90"])
    assert cfg.trainer.get("num_nodes") is None  # the launcher alone leaves the trainer as it is
    from hydra import compose, initialize_config_dir
    from tests.helpers import CFG_DIR
    with initialize_config_dir(config_dir=CFG_DIR, version_base="1.3"):
        launcher = compose("train", ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.nodes=2",
                                     "hydra.launcher.gpus_per_node=4", "hydra.launcher.timeout_min=90"],
                           return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node,
            launcher.timeout_min) == ("gpu", 2, 4, 4, 90)  # one process per GPU
    assert launcher.max_num_timeout > 0  # a pre-empted job is requeued (and resumes with resume=auto)


def test_the_slurm_trainer_runs_ddp_under_lightnings_slurm_environment_with_auto_requeue(monkeypatch):
    from lightning_fabric.plugins.environments import SLURMEnvironment
    allocation = {"SLURM_NTASKS_PER_NODE": "2", "SLURM_NNODES": "2", "SLURM_NTASKS": "4", "SLURM_JOB_NAME": "kd",
                  "SLURM_JOB_ID": "123", "SLURM_PROCID": "0", "SLURM_LOCALID": "0", "SLURM_NODEID": "0",
                  "SLURM_NODELIST": "node1", "SLURM_JOB_NUM_NODES": "2"}
    for name, value in allocation.items():
        monkeypatch.setenv(name, value)
    cfg = compose_config("train", ["trainer=slurm", "trainer.accelerator=cpu", "trainer.precision=32-true",
                                   "trainer.sync_batchnorm=false"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes, cfg.trainer.strategy) == (2, 2, "ddp")
    trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
    environment = trainer.strategy.cluster_environment
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue
    assert environment.requeue_signal == signal.SIGUSR1 and trainer.world_size == 4
    for name in allocation:  # outside Slurm the preset is one process on one node
        monkeypatch.delenv(name)
    cfg = compose_config("train", ["trainer=slurm"])
    assert (cfg.trainer.devices, cfg.trainer.num_nodes) == (1, 1)


def test_a_multirun_goes_through_the_submitit_local_launcher(cli, data_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    cli("train.py", ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                     f"hydra.sweep.dir={sweep}", *TINY, "model=mlp1d",
                     "seed=0,1", f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / 'out'}"])
    records = _records(tmp_path / "out")
    assert sorted(record["seed"] for record in records) == [0, 1]
    # each job ran as its own process through submitit and handed back the sweep objective
    results = sorted((sweep / ".submitit").rglob("*_result.pkl"))
    assert len(results) == 2
    returned = sorted(pickle.loads(path.read_bytes())[1].return_value for path in results)  # (status, JobReturn)
    assert returned == pytest.approx(sorted(sweep_objective(record) for record in records))


def test_hydras_optuna_sweeper_searches_through_multirun(cli, data_dir, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    cli("train.py", ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.seed=0",
                     "optimizer.lr=interval(0.01,0.2)", f"hydra.sweep.dir={sweep}", *TINY,
                     "model=mlp1d", f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path / 'out'}"])
    records = _records(tmp_path / "out")
    assert len(records) == 2 and len({record["config"]["optimizer"]["lr"] for record in records}) == 2
    assert all(0.01 <= record["config"]["optimizer"]["lr"] <= 0.2 for record in records)
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    # Optuna minimised the returned top-1 error: its best trial is a record with the lowest one (ties: either)
    assert result["best_value"] == pytest.approx(min(sweep_objective(record) for record in records))
    best = next(r for r in records if r["config"]["optimizer"]["lr"] == pytest.approx(result["best_params"]["optimizer.lr"]))
    assert sweep_objective(best) == pytest.approx(result["best_value"])
