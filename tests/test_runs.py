"""End to end: train -> distill through the real code paths on tiny mnist1d, the frozen-teacher
invariants, resume, test-only evaluation, run records, and bad input."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from omegaconf import open_dict

from errors import ConfigError, UserError
from models.checkpoints import CheckpointError
from runs.folders import RunFolderError
from runs.folders import config_digest
from runs.training import build_distillation, build_trainer, initial_student, run_distill, run_train
from tests.helpers import CFG_DIR, SimulatedKill, compose_config, tiny_overrides

ROOT = Path(CFG_DIR).parent


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def teacher_record(data_dir, outputs) -> dict:
    return run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=cnn1d")), quiet=True)


def distill_config(data_dir, outputs, *extra):
    return compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment", "student=mlp1d",
                                                    "teacher/model=cnn1d", *extra))


def test_train_record_has_what_the_design_asks(teacher_record):
    folder = Path(teacher_record["run_dir"])
    assert json.loads((folder / "record.json").read_text())["run_dir"] == str(folder)
    assert (folder / "checkpoints" / "last.ckpt").is_file() and (folder / "checkpoints" / "best.ckpt").is_file()
    assert (folder / "logs" / "version_0" / "metrics.csv").is_file()
    for key in ("config", "seed", "git_commit", "wall_time_s", "train_samples_per_s"):
        assert key in teacher_record
    for split in ("last", "best"):
        for metric in ("val/top1", "val/top5", "val/ece", "test/top1", "test/top5", "test/ece"):
            assert 0.0 <= teacher_record[split][metric] <= 1.0
    assert teacher_record["best"]["epoch"] == 0


def test_same_config_reuses_the_finished_run(teacher_record, data_dir, outputs):
    again = run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=cnn1d")), quiet=True)
    assert again["run_dir"] == teacher_record["run_dir"] and again["wall_time_s"] == teacher_record["wall_time_s"]


class TeacherWatch(pl.Callback):
    """Checks at every training step that the teacher is in eval mode and outside the optimizer."""

    def __init__(self):
        self.steps = 0

    def on_train_batch_start(self, trainer, task, batch, batch_idx):
        assert not task.teacher.training and not task.teacher.model.training
        optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
        assert not optimized & {id(p) for p in task.teacher.parameters()}
        self.steps += 1


def test_teacher_stays_frozen_through_a_fit(teacher_record, data_dir, outputs, tmp_path):
    cfg = distill_config(data_dir, outputs, f"teacher.checkpoint={teacher_record['checkpoints']['last']}",
                         "trainer.max_epochs=2")
    cfg.run_dir = str(tmp_path)
    datamodule, task, _ = build_distillation(cfg)
    before = {k: v.clone() for k, v in task.teacher.model.state_dict().items()}
    assert any("running_mean" in k for k in before), "the test needs a teacher with BatchNorm"
    watch = TeacherWatch()
    trainer = build_trainer(cfg, [watch])
    trainer.fit(task, datamodule)
    assert watch.steps == 2 * 4
    after = task.teacher.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "teacher weights or BN statistics moved"
    assert all(not p.requires_grad and p.grad is None for p in task.teacher.parameters())
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    student_keys = {f"model.{k}" for k in task.model.state_dict()}
    assert set(checkpoint["state_dict"]) == student_keys, "only the student may be in its checkpoint"
    assert checkpoint["kd_model_config"]["name"] == "mlp1d"


def test_distill_record_and_teacher_cache(teacher_record, data_dir, outputs):
    record = run_distill(distill_config(data_dir, outputs), quiet=True)
    # No teacher.checkpoint: the teacher config was trained by train.py's code, and the identical
    # config the fixture trained is found in the cache rather than trained again.
    assert record["teacher_run"] == teacher_record["run_dir"]
    for metric in ("agreement", "kl", "teacher_top1", "top1", "ece"):
        assert f"test/{metric}" in record["last"] and f"val/{metric}" in record["best"]
    assert record["last"]["test/teacher_top1"] == pytest.approx(teacher_record["last"]["test/top1"])
    assert record["last"]["test/kl"] >= 0


# (overrides, epoch killed at, epochs in all). Plain KD; and a run with trainable term parts (FitNet's regressor,
# CRD's embeddings, memory bank and Z) and a 2-epoch hint phase at its own lr, killed inside the phase, so the
# resumed run crosses into the main phase (a fresh optimizer state) after restoring the phase's.
RESUMED_RUNS = {
    "kd": (("trainer.max_epochs=3",), 2, 3),
    "fitnet_hint_and_crd": (("kd=fitnet", "student=cnn1d_small", "+kd.terms.crd._target_=losses.crd.CRDTerm",
                             "+kd.terms.crd.feat_dim=16", "+kd.terms.crd.num_negatives=32", "trainer.max_epochs=2",
                             "+kd.phases=[{name: hint, epochs: 2, terms: {fitnet: 1.0, crd: 0.8}, lr: 0.02}]"), 1, 4),
}


@pytest.mark.parametrize("method", sorted(RESUMED_RUNS))
def test_killed_run_resumes_to_the_same_weights(method, teacher_record, data_dir, outputs):
    overrides, kill_epoch, epochs = RESUMED_RUNS[method]
    common = (f"teacher.checkpoint={teacher_record['checkpoints']['last']}", *overrides)
    straight = run_distill(distill_config(data_dir, outputs, *common, f"run_name={method}-straight"), quiet=True)
    killed = (*common, f"run_name={method}-killed")
    kill = ("+callbacks.kill._target_=tests.helpers.KillAtEpoch", f"+callbacks.kill.epoch={kill_epoch}")
    with pytest.raises(SimulatedKill):
        run_distill(distill_config(data_dir, outputs, *killed, *kill), quiet=True)
    with pytest.raises(RunFolderError, match="resume=true"):
        run_distill(distill_config(data_dir, outputs, *killed), quiet=True)
    resumed = run_distill(distill_config(data_dir, outputs, *killed, "resume=true"), quiet=True)
    assert resumed["resumed_from"].endswith("last.ckpt") and resumed["epochs"] == straight["epochs"] == epochs
    weights = [torch.load(r["checkpoints"]["last"], map_location="cpu", weights_only=False)["state_dict"]
               for r in (straight, resumed)]
    assert weights[0].keys() == weights[1].keys()
    for key, value in weights[0].items():  # tensors, and a term's extra state (e.g. CRD's draw count)
        assert torch.equal(value, weights[1][key]) if torch.is_tensor(value) else value == weights[1][key], key


def test_test_only_evaluates_a_checkpoint(teacher_record, data_dir, outputs, cli, capfd):
    checkpoint = teacher_record["checkpoints"]["last"]
    # The checkpoint alone rebuilds its model and names the run: folder, record and config say cnn1d, whatever
    # model the composed config held (mlp1d here).
    record = run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=mlp1d", "test_only=true",
                                                              f"ckpt={checkpoint}")), quiet=True)
    assert record["model"] == record["config"]["model"]["name"] == "cnn1d" and "-cnn1d-" in Path(record["run_dir"]).name
    assert record["test"]["test/top1"] == pytest.approx(teacher_record["last"]["test/top1"])
    # A model named on the command line that contradicts the checkpoint is refused, in one line.
    with pytest.raises(SystemExit) as stopped:
        cli("train.py", [*tiny_overrides(data_dir, outputs), "model=mlp1d", "test_only=true", f"ckpt={checkpoint}"])
    assert stopped.value.code == 2
    assert "model=mlp1d contradicts ckpt=" in capfd.readouterr().err


def test_student_starts_from_a_checkpoint(teacher_record, data_dir, outputs):
    """student_init_checkpoint: the student starts from a run's weights (PAD-L2 from the L2 student); a checkpoint
    that does not fit the student is refused; unset, the run's hash is what it was before the key existed."""
    checkpoint = teacher_record["checkpoints"]["last"]
    cfg = distill_config(data_dir, outputs, "student=cnn1d", f"student_init_checkpoint={checkpoint}")
    student, config = initial_student(cfg)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    assert config["name"] == "cnn1d"
    assert all(torch.equal(value, saved[f"model.{key}"]) for key, value in student.state_dict().items())
    with pytest.raises(CheckpointError, match="does not fit architecture 'mlp1d'"):
        initial_student(distill_config(data_dir, outputs, f"student_init_checkpoint={checkpoint}"))
    plain = distill_config(data_dir, outputs, "student=cnn1d")
    assert config_digest(cfg) != config_digest(plain)
    with open_dict(plain):
        del plain["student_init_checkpoint"]
    assert config_digest(plain) == config_digest(distill_config(data_dir, outputs, "student=cnn1d"))


# ----------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("override,group", [("kd=no_such_method", "kd"), ("student=no_such_model", "student"),
                                            ("data=no_such_data", "data")])
def test_unknown_choice_lists_the_valid_ones(override, group):
    from runs.configs import compose
    with pytest.raises(ConfigError, match=rf"{override}: config group {group} has no option .*list them: ls cfg/{group}/"):
        compose("distill", [override])


def test_teacher_with_other_class_count_is_refused(teacher_record, data_dir, outputs):
    cfg = distill_config(data_dir, outputs, "data=synthetic", "data.num_classes=5", "data.input_shape=[1,40]",
                         f"teacher.checkpoint={teacher_record['checkpoints']['last']}")
    with pytest.raises(UserError, match="teacher predicts 10 classes but the data has 5"):
        run_distill(cfg, quiet=True)


def test_non_checkpoint_file_is_refused(data_dir, outputs, tmp_path):
    junk = tmp_path / "notes.ckpt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read: it is truncated or not a model checkpoint"):
        run_distill(distill_config(data_dir, outputs, f"teacher.checkpoint={junk}"), quiet=True)


def test_checkpoint_of_another_architecture_is_refused(teacher_record, data_dir, outputs, tmp_path):
    # A foreign (plain state dict) checkpoint of a cnn1d, declared as a resnet8: the shapes cannot fit.
    state = torch.load(teacher_record["checkpoints"]["last"], map_location="cpu", weights_only=False)["state_dict"]
    foreign = tmp_path / "cnn1d_weights.pth"
    torch.save({"model": {k[len("model."):]: v for k, v in state.items()}}, foreign)
    with pytest.raises(CheckpointError, match="does not fit architecture 'mlp1d'"):
        run_distill(distill_config(data_dir, outputs, f"teacher.checkpoint={foreign}", "teacher/model=mlp1d"),
                    quiet=True)


def test_missing_cifar_offline_stops_before_training(data_dir, outputs, tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets.utils, "download_url", offline)
    monkeypatch.setattr(torchvision.datasets.utils, "download_and_extract_archive", offline)
    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    cfg = distill_config(tmp_path, outputs, "data=cifar10", f"paths.data_dir={tmp_path}",
                         "data.num_workers=0", "student=resnet8", "teacher/model=resnet8", "run_name=nocifar")
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        run_distill(cfg, quiet=True)
    assert not list((outputs / "train").glob("*resnet8*")), "nothing may be trained when data is missing"


def test_non_positive_temperature_stops_before_training(data_dir, outputs):
    with pytest.raises(UserError, match=r"kd.terms.kd.temperature=0: must be a number > 0"):
        run_distill(distill_config(data_dir, outputs, "kd.terms.kd.temperature=0", "teacher/model=resnet8",
                                   "run_name=badtemp"), quiet=True)
    assert not list((outputs / "distill").glob("badtemp*"))


def test_resume_without_a_checkpoint_is_refused(data_dir, outputs):
    with pytest.raises(RunFolderError, match="no checkpoint to resume"):
        run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=mlp1d", "resume=true",
                                                         "run_name=nothing")), quiet=True)


# ----------------------------------------------------------------------------------------------- CLI
def run_cli(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "0"}
    return subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


def test_train_then_distill_through_the_entry_points(data_dir, tmp_path):
    common = tiny_overrides(data_dir, tmp_path)
    trained = run_cli("train.py", *common, "model=cnn1d")
    assert trained.returncode == 0, trained.stderr[-3000:]
    teacher = json.loads(next((tmp_path / "train").glob("*/record.json")).read_text())
    distilled = run_cli("distill_train.py", *common, f"teacher.checkpoint={teacher['checkpoints']['last']}")
    assert distilled.returncode == 0, distilled.stderr[-3000:]
    record = json.loads(next((tmp_path / "distill").glob("*/record.json")).read_text())
    assert record["teacher_checkpoint"] == teacher["checkpoints"]["last"]
    # The quickstart (distill_train.py's default experiment) also trains the student from scratch.
    assert "-mlp1d-" in record["baseline"]["run_dir"] and "test/top1" in record["baseline"]["last"]
    assert "kd student" in distilled.stdout and "scratch student" in distilled.stdout


def test_cli_bad_input_is_one_line(data_dir, tmp_path):
    result = run_cli("distill_train.py", *tiny_overrides(data_dir, tmp_path), "kd.terms.kd.temperature=-1")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: kd.terms.kd.temperature=-1: must be a number > 0; e.g. kd.terms.kd.temperature=4"]


@pytest.mark.parametrize("logger,written", [("tensorboard", "logs/version_0"), ("wandb", "wandb")])
def test_other_loggers_write_into_the_run_folder(logger, written, data_dir, tmp_path):
    record = run_train(compose_config("train", tiny_overrides(data_dir, tmp_path, "model=mlp1d", f"logger={logger}")),
                       quiet=True)
    assert (Path(record["run_dir"]) / written).exists()


def test_multirun_over_seeds(data_dir, tmp_path):
    result = run_cli("train.py", "-m", "seed=0,1", *tiny_overrides(data_dir, tmp_path), "model=mlp1d")
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "train").glob("*/record.json")]
    assert sorted(r["seed"] for r in records) == [0, 1]


def test_last_checkpoint_is_the_last_epoch_even_without_a_new_best(data_dir, tmp_path):
    # Lightning's own save_last rewrites last.ckpt only in epochs that save a new best: over 4 epochs of a
    # barely learning model some epochs do not, and last.ckpt must still be the last one
    record = run_train(compose_config("train", tiny_overrides(data_dir, tmp_path, "model=mlp1d", "optimizer.lr=1e-4",
                                                              "trainer.max_epochs=4")), quiet=True)
    last = torch.load(record["checkpoints"]["last"], map_location="cpu", weights_only=False)
    best = torch.load(record["checkpoints"]["best"], map_location="cpu", weights_only=False)
    assert last["epoch"] == 3 and record["epochs"] == 4 and best["epoch"] == record["best"]["epoch"]


def test_results_come_from_a_clean_commit(monkeypatch):
    """The scripts that make results/ (quickstart_seeds.py, digits_methods.py) refuse a tree with uncommitted
    changes, unless allowed (a trial, which their output then states)."""
    from errors import UserError
    from runs import folders
    monkeypatch.setattr(folders, "git_state", lambda: {"git_commit": "abc", "git_dirty": True})
    with pytest.raises(UserError, match="uncommitted changes"):
        folders.committed_state()
    assert folders.committed_state(allow_dirty=True)["git_dirty"] is True
    monkeypatch.setattr(folders, "git_state", lambda: {"git_commit": "abc", "git_dirty": False})
    assert folders.committed_state() == {"git_commit": "abc", "git_dirty": False}
