"""Multi-process training (trainer=ddp) as correct as one process: 2 CPU processes over gloo on 127.0.0.1.

The runs go through distill_train.py, as a user starts them: Lightning's launcher re-runs the command once
per extra process. Each costs two Python processes that import Lightning, so there are few of them, on tiny
mnist1d for one epoch. Evaluation sets have odd sizes (101 and 99 examples): a DistributedSampler would pad
them with repeats, which the metric equalities below would see.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from datamodules.sampling import EpochSeededRandomSampler, ProcessShard
from errors import ConfigError
from runs.folders import LAST_CHECKPOINT, claim_run_folder, run_folder
from runs.processes import follows_first_process, is_multi_process, single_process_trainer
from runs.training import _evaluate, build_distillation, build_trainer, run_distill, run_train
from tests.fake_cifar import patch_cifar_md5, write_fake_cifar as write_random_cifar
from tests.helpers import CFG_DIR, compose_config

ROOT = Path(CFG_DIR).parent
TWO_PROCESSES = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
                 "trainer.sync_batchnorm=false"]  # SyncBatchNorm needs a GPU
# A student without BatchNorm (a linear model): 2 processes with batch B then compute what 1 with batch 2B does.
LINEAR_STUDENT = ["student=mlp1d", "student.hidden=[]"]
CRD_SMALL = ["kd=crd", "kd.terms.crd.feat_dim=16", "kd.terms.crd.num_negatives=32"]


def recipe(data_dir: Path, output_dir: Path) -> list[str]:
    return ["data=mnist1d", "data.train_subset=256", "data.val_size=101", "data.test_subset=99",
            "data.eval_batch_size=32", "trainer.max_epochs=1", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false", f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}"]


def common(data_dir: Path, output_dir: Path) -> list[str]:
    return ["~experiment", "teacher/model=cnn1d", *recipe(data_dir, output_dir)]


def distill_on_two_processes(data_dir: Path, output_dir: Path, *overrides: str, base: list[str] | None = None,
                             site: Path | None = None) -> dict:
    """`base` (default: common()) then the two processes' trainer and `overrides`; `site`: a folder put first on
    both processes' PYTHONPATH (e.g. with a sitecustomize.py)."""
    path = str(ROOT) if site is None else f"{site}{os.pathsep}{ROOT}"
    env = {**os.environ, "PYTHONPATH": path, "WANDB_MODE": "offline", "MASTER_ADDR": "127.0.0.1",
           "OMP_NUM_THREADS": "1"}
    base = common(data_dir, output_dir) if base is None else base
    result = subprocess.run([sys.executable, "distill_train.py", *base, *TWO_PROCESSES,
                             *overrides], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    records = list((output_dir / "distill").glob("*/record.json"))
    assert len(records) == 1
    return json.loads(records[0].read_text())


def one_process_config(data_dir: Path, output_dir: Path, *overrides: str):
    return compose_config("distill", [*common(data_dir, output_dir), *overrides])


def assert_evaluates_as_one_process(record: dict, cfg, run_dir: Path) -> None:
    """The record's metrics (2 processes evaluating last.ckpt) equal one process evaluating the same file."""
    cfg.run_dir = str(run_dir)
    datamodule, task, _ = build_distillation(cfg)
    single = _evaluate(build_trainer(cfg, []), task, datamodule, record["checkpoints"]["last"])
    assert set(single) == set(record["last"])
    for name, value in single.items():
        assert record["last"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name


def weights(record: dict) -> dict[str, torch.Tensor]:
    return torch.load(record["checkpoints"]["last"], map_location="cpu", weights_only=False)["state_dict"]


def assert_same_weights(record: dict, other: dict) -> None:
    mine, theirs = weights(record), weights(other)
    assert mine.keys() == theirs.keys()
    for name in mine:
        torch.testing.assert_close(mine[name], theirs[name], rtol=1e-5, atol=1e-6, msg=name)


def test_shares_of_two_processes_make_the_batches_of_one():
    """Training: at every step the two processes' batches of B, in rank order, are one process's batch of 2B,
    every epoch; a short epoch is topped up to equal shares. Evaluation: each example once, nothing added."""
    def batches(sampler, size):
        order = list(sampler)
        return [order[i: i + size] for i in range(0, len(order), size)]

    for epoch, length in ((0, 64), (3, 64), (1, 59)):
        one = EpochSeededRandomSampler(length, seed=5)
        shares = [ProcessShard(EpochSeededRandomSampler(length, seed=5), length, rank, 2, 8) for rank in (0, 1)]
        for sampler in (one, *shares):
            sampler.set_epoch(epoch)
        together = [a + b for a, b in zip(*(batches(share, 8) for share in shares))]
        alone = batches(one, 16)
        assert len(batches(shares[0], 8)) == len(batches(shares[1], 8)) == len(alone)
        assert together[:-1] == alone[:-1]
        # 59 = 3 * 16 + 11: the last step's 11 and one repeat of the epoch's first example, 6 per process
        assert together[-1] == alone[-1] + alone[0][: len(together[-1]) - len(alone[-1])]
    evaluation = [list(ProcessShard(None, 11, rank, 2)) for rank in (0, 1)]
    assert sorted(evaluation[0] + evaluation[1]) == list(range(11)) and len(evaluation[1]) == 5
    with pytest.raises(ConfigError, match="trainer.devices"):
        ProcessShard(None, 1, 0, 2)


def test_teacher_trainer_and_who_follows(monkeypatch, tmp_path):
    """A model trained inside a DDP run gets trainer=gpu's settings (so either reuses the other's run); only a
    process of rank > 0 in a multi-process run follows, and it takes the first process's decision without
    moving anything."""
    ddp, gpu = (compose_config("distill", [f"trainer={name}"]).trainer for name in ("ddp", "gpu"))
    assert is_multi_process(ddp) and not is_multi_process(gpu) and single_process_trainer(gpu) is gpu
    assert single_process_trainer(ddp) == gpu
    for devices, multi in ((2, True), ("auto", True), ([3], False), (1, False)):
        assert is_multi_process(OmegaConf.merge(gpu, {"devices": devices})) is multi
    for name in ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID"):
        monkeypatch.delenv(name, raising=False)
    assert not follows_first_process(ddp)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert follows_first_process(ddp) and not follows_first_process(gpu)  # a teacher: every process asks for it
    cfg = compose_config("distill", [*common(tmp_path, tmp_path), *TWO_PROCESSES, "resume=true", "rerun=true"])
    last = run_folder(cfg) / LAST_CHECKPOINT
    last.parent.mkdir(parents=True)
    last.write_text("a checkpoint")
    assert claim_run_folder(cfg) == (run_folder(cfg), None, None) and last.is_file()  # rerun: rank 0 moves it
    cfg.rerun = False
    assert claim_run_folder(cfg) == (run_folder(cfg), None, str(last))


def test_kd_trains_its_teacher_and_baseline_once_then_equals_one_process(data_dir, tmp_path):
    ddp = distill_on_two_processes(data_dir, tmp_path / "ddp", *LINEAR_STUDENT, "data.batch_size=32",
                                   "teacher.cache=false", "baseline=true")
    trained = [json.loads(p.read_text()) for p in (tmp_path / "ddp" / "train").glob("*/record.json")]
    assert sorted(r["config"]["model"]["name"] for r in trained) == ["cnn1d", "mlp1d"]  # teacher, baseline
    assert all(r["config"]["trainer"]["devices"] == 1 and "strategy" not in r["config"]["trainer"] for r in trained)
    assert ddp["config"]["trainer"]["devices"] == 2 and ddp["baseline"]["run_dir"] in [r["run_dir"] for r in trained]
    assert ddp["teacher_calls"] == ddp["teacher_examples"] == 256, "both processes' teacher calls are counted"
    # One process with twice the batch: the same global batches, so the same student.
    single = (*LINEAR_STUDENT, "data.batch_size=64", "teacher.cache=false",
              f"teacher.checkpoint={ddp['teacher_checkpoint']}")
    assert_same_weights(ddp, run_distill(one_process_config(data_dir, tmp_path / "one", *single), quiet=True))
    assert_evaluates_as_one_process(ddp, one_process_config(data_dir, tmp_path / "one", *single), tmp_path / "eval")


def test_feature_method_with_a_phase_on_device_resident_data(data_dir, tmp_path):
    """FitNet's hint phase trains only part of the model (DDP must expect unused parameters); device-resident
    batches are shared between the processes too."""
    teacher = run_train(compose_config("train", [*recipe(data_dir, tmp_path / "teacher"), "model=cnn1d"]), quiet=True)
    method = ["kd=fitnet", "student=cnn1d_small", "data.device_resident=true", "data.batch_size=32",
              "+kd.phases=[{name: hint, epochs: 1, terms: {fitnet: 1.0}}]",
              f"teacher.checkpoint={teacher['checkpoints']['last']}"]
    ddp = distill_on_two_processes(data_dir, tmp_path / "ddp", *method)
    assert ddp["epochs"] == 2 and ddp["best"]["epoch"] in (0, 1)
    assert_evaluates_as_one_process(ddp, one_process_config(data_dir, tmp_path / "one", *method), tmp_path / "eval")


@pytest.mark.skipif(not (ROOT / "losses" / "distributed.py").is_file(),
                    reason="CRD's memory is updated from all processes only once losses/distributed.py has landed")
def test_crd_on_two_processes_equals_one_process_with_twice_the_batch(data_dir, tmp_path):
    teacher = ["teacher.cache=false"]
    ddp = distill_on_two_processes(data_dir, tmp_path / "ddp", *LINEAR_STUDENT, *CRD_SMALL, *teacher,
                                   "data.batch_size=32")
    single = run_distill(one_process_config(data_dir, tmp_path / "one", *LINEAR_STUDENT, *CRD_SMALL, *teacher,
                                            "data.batch_size=64", f"teacher.checkpoint={ddp['teacher_checkpoint']}"),
                         quiet=True)
    assert_same_weights(ddp, single)  # the student, CRD's embeddings, its memory and its Z


def test_two_view_batches_on_two_processes_equal_one_process_with_the_joint_batch(tmp_path, monkeypatch):
    """MLKD's weak and strong views (fake CIFAR-100, let through its md5 check in both processes):
    every process's share carries both views of its examples, and the levels that span the batch (MLKD's batch and
    class matrices, its confidence medians) see the global batch, so 2 processes with batch 16 train the student
    1 process with batch 32 does."""
    data = tmp_path / "data"
    write_random_cifar(data, "cifar100", n_train=64, n_test=21)
    patch_cifar_md5(monkeypatch)
    site = tmp_path / "site"  # both processes let the fake files through, each at its start
    site.mkdir()
    (site / "sitecustomize.py").write_text("from datamodules.cifar_files import accept_unverified_cifar_files\n"
                                           "accept_unverified_cifar_files()\n")
    def base(output_dir: Path) -> list[str]:
        return ["~experiment", "data=cifar100", "data.val_size=0", "data.test_subset=21", "data.eval_batch_size=32",
                "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                f"paths.data_dir={data}", f"paths.output_dir={output_dir}", "kd=mlkd", "teacher/model=resnet8",
                "student=mlp", "student.hidden=[]", "teacher.cache=false"]
    ddp = distill_on_two_processes(data, tmp_path / "ddp", "data.batch_size=16", site=site,
                                   base=base(tmp_path / "ddp"))
    assert ddp["teacher_calls"] == 2 * 64, "each process's teacher calls on both views are counted"
    single = run_distill(compose_config("distill", [*base(tmp_path / "one"), "data.batch_size=32",
                                                    f"teacher.checkpoint={ddp['teacher_checkpoint']}"]), quiet=True)
    assert_same_weights(ddp, single)
