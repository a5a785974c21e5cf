"""Honest stops and safe writes: SIGTERM and SIGINT stop a run with one line naming the command that
continues (which reaches the unkilled run's result), a failed checkpoint or record write keeps the previous
file, a folder that cannot take the run is refused before anything is written, a last batch of one example
trains, a Slurm-requeued job continues by itself, a teacher killed inside a run continues without circular
hints, and init_from starts a new run from another run's checkpoint. Tiny mnist1d; the signals go to real
processes (two, side by side), the rest runs in process."""
from __future__ import annotations

import collections
import errno
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from datamodules.base import drops_lone_example
from errors import ConfigError
from runs import writing
from runs.folders import RunFolderError, claim_run_folder, run_folder
from runs.records import read_record, write_record
from runs.sweep import trial_variants
from runs.training import run_distill, run_train
from runs.writing import WriteError
from tests.helpers import SimulatedKill, compose_config, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def train_overrides(data_dir, outputs, *extra):
    return tiny_overrides(data_dir, outputs, "model=mlp1d", "trainer.max_epochs=3", *extra)


def weights(record: dict) -> dict:
    return torch.load(record["checkpoints"]["last"], map_location="cpu", weights_only=False)["state_dict"]


def assert_same_run(straight: dict, resumed: dict) -> None:
    assert resumed["epochs"] == straight["epochs"] and resumed["last"] == straight["last"]
    first, second = weights(straight), weights(resumed)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


# ----------------------------------------------------------------------------------------------- signals
@pytest.fixture(scope="module")
def straight(data_dir, tmp_path_factory) -> dict:
    """The run the signalled ones must reach, unkilled."""
    return run_train(compose_config("train", train_overrides(data_dir, tmp_path_factory.mktemp("straight"))),
                     quiet=True)


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_sigterm_and_sigint_stop_with_one_line_and_the_command_continues_to_the_unkilled_run(
        data_dir, tmp_path, straight, cli, capsys):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT), "HYDRA_FULL_ERROR": "0"}
    started = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        marker = tmp_path / f"paused-{signum.name}"
        arguments = train_overrides(data_dir, tmp_path / signum.name,
                                    "+callbacks.pause._target_=tests.helpers.PauseAtEpoch", "+callbacks.pause.epoch=1",
                                    f"+callbacks.pause.marker={marker}")
        # SIGINT at its default, as in a terminal's foreground job: a suite started in the background by a shell
        # passes it on ignored, and Python then makes no KeyboardInterrupt of it (the run rightly goes on)
        started[signum] = (marker, subprocess.Popen([sys.executable, "train.py", *arguments], cwd=ROOT, env=env,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                                    preexec_fn=default_sigint))
    # Each run gets its signal as soon as it pauses (in epoch 1, after epoch 0's checkpoint), neither waiting on the other
    deadline, waiting = time.monotonic() + 300, dict(started)
    while waiting and time.monotonic() < deadline:
        for signum, (marker, process) in list(waiting.items()):
            if marker.exists() or process.poll() is not None:
                process.send_signal(signum)
                del waiting[signum]
        time.sleep(0.1)
    for signum, (marker, process) in started.items():
        stderr = process.communicate(timeout=300)[1]
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode == 128 + signum, (signum, stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"stopped by {signum.name} in epoch 1 of train/"), lines
        folder = run_folder(compose_config("train", train_overrides(data_dir, tmp_path / signum.name)))
        assert f"its last finished epoch is kept in {folder}/checkpoints/last.ckpt" in lines[0]
        assert not (folder / "record.json").exists()
        command = shlex.split(lines[0].split("continue with: ", 1)[1])
        assert command[:2] == ["python", "train.py"] and command[-1] == "resume=true"
        cli("train.py", command[2:])  # the line's own command, as the user would paste it
        resumed = read_record(folder)
        assert resumed["resumed_from"] == f"{folder}/checkpoints/last.ckpt"
        assert_same_run(straight, resumed)
    capsys.readouterr()


# ----------------------------------------------------------------------------------------------- writing
class FullDisk:
    """runs.writing's write of one file fails as a full disk would, after half the bytes, from the `after`-th
    write of a file named `name` on (`after` 0: the first)."""

    def __init__(self, name: str, after: int) -> None:
        self.name, self.after, self.seen = name, after, 0
        self.real = writing._write_bytes

    def __call__(self, handle, data: bytes) -> None:
        if Path(handle.name).name.startswith(f".{self.name}.partial"):
            self.seen += 1
            if self.seen > self.after:
                handle.write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.real(handle, data)


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_checkpoint(data_dir, tmp_path, straight,
                                                                              monkeypatch):
    cfg = compose_config("train", train_overrides(data_dir, tmp_path))
    folder = run_folder(cfg)
    last = folder / "checkpoints" / "last.ckpt"
    kept = {}

    class Remember(pl.Callback):  # last.ckpt as epoch 0 left it, before epoch 1 tries to overwrite it
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                kept["bytes"] = last.read_bytes()

    monkeypatch.setattr(writing, "_write_bytes", FullDisk("last.ckpt", after=1))
    with pytest.raises(WriteError) as failure:
        run_train(cfg, quiet=True, callbacks=[Remember()])
    message = str(failure.value)
    assert message.startswith(f"writing {last} failed (No space left on device); the previous last.ckpt is intact")
    assert "\n" not in message and "resume=true" in message
    assert last.read_bytes() == kept["bytes"], "the previous checkpoint was damaged"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    assert not [p.name for p in last.parent.iterdir() if ".partial" in p.name], "a partial file was left behind"
    assert not (folder / "record.json").exists()
    monkeypatch.undo()  # space freed: the run continues from the kept checkpoint to the unkilled run's result
    assert_same_run(straight, run_train(compose_config("train", train_overrides(data_dir, tmp_path, "resume=true")),
                                        quiet=True))


def test_a_full_disk_during_a_record_write_keeps_the_previous_record(tmp_path, monkeypatch):
    write_record(tmp_path, {"task": "train", "last": {"test/top1": 0.5}})
    before = (tmp_path / "record.json").read_bytes()
    monkeypatch.setattr(writing, "_write_bytes", FullDisk("record.json", after=0))
    with pytest.raises(WriteError, match="the previous record.json is intact"):
        write_record(tmp_path, {"task": "train", "last": {"test/top1": 0.9}})
    assert (tmp_path / "record.json").read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_a_folder_on_a_full_disk_is_refused_before_hydra_writes(cli, tmp_path, monkeypatch, capsys):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(writing.shutil, "disk_usage", lambda path: usage(10 ** 9, 10 ** 9 - 2 ** 20, 2 ** 20))
    with pytest.raises(SystemExit) as stop:
        cli("train.py", [f"paths.output_dir={tmp_path / 'outputs'}"])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert stop.value.code == 2 and len(lines) == 1
    assert lines[0].startswith(f"error: paths.output_dir={tmp_path / 'outputs'}: nothing can be written there (its "
                               f"disk has 1.0 MiB free")
    assert not list(tmp_path.iterdir()), "something was written"


# ----------------------------------------------------------------------------------------------- valid configs train
def test_a_last_batch_of_one_example_is_left_out_and_the_run_trains(data_dir, tmp_path):
    # 257 training examples at batch 64: the anchors' loaders never meet a batch of one; BatchNorm cannot train on one
    overrides = tiny_overrides(data_dir, tmp_path, "model=mlp1d", "data.train_subset=257", "trainer.max_epochs=2")
    record = run_train(compose_config("train", overrides), quiet=True)
    assert record["epochs"] == 2
    order = torch.utils.data.SequentialSampler(range(257))
    assert drops_lone_example(order, 64) and not drops_lone_example(order, 96) and not drops_lone_example(None, 64)
    assert not drops_lone_example(torch.utils.data.SequentialSampler(range(1)), 64)


# ----------------------------------------------------------------------------------------------- going on
def test_a_slurm_requeued_job_continues_its_run_by_itself(data_dir, tmp_path, monkeypatch):
    cfg = compose_config("train", train_overrides(data_dir, tmp_path, "rerun=true"))
    folder = run_folder(cfg)
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "hpc_ckpt_1.ckpt").write_bytes(b"lightning's")
    (folder / "hpc_ckpt_2.ckpt").write_bytes(b"lightning's newest")
    for name, value in {"SLURM_NTASKS": "1", "SLURM_JOB_NAME": "kd", "SLURM_JOB_ID": "7", "SLURM_RESTART_COUNT": "1"
                        }.items():
        monkeypatch.setenv(name, value)
    # pre-empted before an epoch finished: Lightning's newest HPC checkpoint; rerun=true is not applied again
    assert claim_run_folder(cfg) == (folder, None, str(folder / "hpc_ckpt_2.ckpt"))
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"epoch end")
    assert claim_run_folder(cfg) == (folder, None, str(folder / "checkpoints" / "last.ckpt"))  # exact: epoch's end
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")  # the job's first start: rerun=true moves the folder aside
    assert claim_run_folder(cfg) == (folder, None, None) and not folder.exists()


def test_a_teacher_killed_inside_a_run_continues_without_circular_hints(data_dir, tmp_path):
    overrides = tiny_overrides(data_dir, tmp_path, "~experiment", "student=mlp1d", "teacher/model=mlp1d",
                               "teacher.recipe.trainer.max_epochs=2")
    kill = ("+callbacks.kill._target_=tests.helpers.KillAtEpoch", "+callbacks.kill.epoch=1")  # the teacher's epoch 1
    with pytest.raises(SimulatedKill):
        run_distill(compose_config("distill", [*overrides, *kill]), quiet=True)
    with pytest.raises(RunFolderError, match="never finished an epoch.*drop resume=true to start it .*continues from "
                                             "its own last checkpoint by itself"):
        run_distill(compose_config("distill", [*overrides, "resume=true"]), quiet=True)
    record = run_distill(compose_config("distill", overrides), quiet=True)  # the same command: no hint needed
    teacher = json.loads((Path(record["teacher_run"]) / "record.json").read_text())
    assert teacher["resumed_from"].endswith("checkpoints/last.ckpt") and teacher["epochs"] == 2


class FirstWeights(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def test_init_from_starts_a_new_run_from_another_runs_checkpoint_and_records_it(data_dir, tmp_path, straight):
    origin = straight["checkpoints"]["last"]
    cfg = compose_config("train", train_overrides(data_dir, tmp_path, f"init_from={origin}", "optimizer.lr=0.01",
                                                  "trainer.max_epochs=1"))
    first = FirstWeights()
    record = run_train(cfg, quiet=True, callbacks=[first])
    saved = torch.load(origin, map_location="cpu", weights_only=False)
    assert all(torch.equal(first.state[k], saved["state_dict"][k]) for k in saved["state_dict"])
    assert record["init_from"] == {"checkpoint": origin, "epoch": 2, "global_step": saved["global_step"],
                                   "run_dir": straight["run_dir"]}
    assert record["run_dir"] != straight["run_dir"] and record["epochs"] == 1
    with pytest.raises(ConfigError, match=r"^init_from=.*must be the path of an existing file"):
        run_train(compose_config("train", train_overrides(data_dir, tmp_path, f"init_from={tmp_path}/none.ckpt")))


def test_every_value_of_a_sweep_space_is_checked_once():
    space = {"a": {"grid": [1, 2, 3]}, "b": {"uniform": [0.1, 0.9]}, "c": {"randint": [0, 10]}}
    assert trial_variants(space) == [{"a": 1, "b": 0.1, "c": 0}, {"a": 2, "b": 0.1, "c": 0}, {"a": 3, "b": 0.1, "c": 0},
                                     {"a": 1, "b": 0.9, "c": 0}, {"a": 1, "b": 0.1, "c": 9}]
