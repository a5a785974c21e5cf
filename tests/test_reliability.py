"""When something goes wrong: non-finite values stop a run at their first step and keep the last good
checkpoint; a teacher whose outputs are not finite is refused before it is used or cached; a checkpoint that
cannot be read (to resume, or as a teacher) stops with its file and the fix; a teacher given by checkpoints is
recorded as the checkpoints' own model. Tiny mnist1d, in process."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from models.checkpoints import CheckpointError
from models.teachers import FrozenTeacher
from runs.records import Record
from runs.tables import config_value
from runs.teacher_cache import cached_teacher
from runs.training import build_datamodule, run_distill, run_train
from runs.validation import check_config
from tasks.finite import FiniteWatch, NonFiniteError
from tests.helpers import DivergeAtEpoch, SimulatedKill, compose_config, tiny_overrides

KILL_AT_EPOCH_1 = ("+callbacks.kill._target_=tests.helpers.KillAtEpoch", "+callbacks.kill.epoch=1")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def teachers(data_dir, outputs) -> dict[str, dict]:
    """Finished runs of a cnn1d and an mlp1d (teachers of the distillation tests)."""
    return {name: run_train(compose_config("train", tiny_overrides(data_dir, outputs, f"model={name}")), quiet=True)
            for name in ("cnn1d", "mlp1d")}


def train_config(data_dir, outputs, *extra):
    return compose_config("train", tiny_overrides(data_dir, outputs, "model=mlp1d", *extra))


def distill_config(data_dir, outputs, *extra):
    return compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment", "student=mlp1d", *extra))


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------------------------- non-finite
class LossSpy(pl.Callback):
    """(step, loss is finite) of every training step."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append((trainer.global_step - 1, bool(torch.isfinite(outputs["loss"]))))


def test_diverging_run_stops_at_its_first_non_finite_step_and_resumes_from_the_last_good_checkpoint(data_dir, outputs):
    diverge, spy = DivergeAtEpoch(1), LossSpy()
    with pytest.raises(NonFiniteError) as stop:
        run_train(train_config(data_dir, outputs, "trainer.max_epochs=2", "run_name=diverging"), quiet=True,
                  callbacks=[diverge, spy])
    first_bad = min(step for step, finite in spy.steps if not finite)
    folder = next((outputs / "train").glob("diverging-*"))
    last = folder / "checkpoints" / "last.ckpt"
    message = str(stop.value)
    assert f"in loss at epoch 1, step {first_bad} " in message and str(last) in message and "\n" not in message
    assert last.read_bytes() == diverge.last_good, "a checkpoint was written after the non-finite step"
    assert not (folder / "record.json").exists()
    resumed = run_train(train_config(data_dir, outputs, "trainer.max_epochs=2", "run_name=diverging", "resume=true"),
                        quiet=True)
    assert resumed["resumed_from"] == str(last) and resumed["epochs"] == 2


def test_diverging_teacher_inside_a_distillation_run_is_named(data_dir, outputs):
    # The case: optimizer.lr=1e12 and a teacher trained first with the same recipe. Its training stops
    # at its first non-finite step, before anything is cached or distilled.
    cfg = distill_config(data_dir, outputs, "teacher/model=cnn1d", "optimizer.lr=1e12", "run_name=absurd")
    with pytest.raises(NonFiniteError, match=r"^training the teacher cnn1d .*in loss at epoch 0, step \d+ .*no "
                                             r"checkpoint had been written yet"):
        run_distill(cfg, quiet=True)
    assert not list((outputs / "distill").glob("absurd-*")) and not list(outputs.glob("teacher_cache/*"))


def test_diverging_student_names_its_terms(data_dir, outputs, teachers):
    cfg = distill_config(data_dir, outputs, f"teacher.checkpoint={teachers['cnn1d']['checkpoints']['last']}",
                         "optimizer.lr=1e12", "run_name=absurd_student")
    with pytest.raises(NonFiniteError, match=r"in loss, kd.terms.ce, kd.terms.kd at epoch 0, step \d+ "):
        run_distill(cfg, quiet=True)


def test_a_last_step_that_leaves_the_weights_infinite_stops_the_run(data_dir, outputs):
    # One step at an absurd rate: its loss is finite (computed before the update), the weights it leaves are not;
    # evaluating them would record NaN metrics without a word.
    cfg = train_config(data_dir, outputs, "trainer.max_epochs=1", "trainer.limit_train_batches=1", "optimizer.lr=1e38",
                       "run_name=last_step_inf")
    with pytest.raises(NonFiniteError, match=r"in the trained weights after step 1 \(epoch 0\)"):
        run_train(cfg, quiet=True)
    assert not list((outputs / "train").glob("last_step_inf-*/record.json"))


def test_finite_watch_names_the_first_bad_step_and_its_values():
    watch, one, nan = FiniteWatch(), torch.tensor(1.0), torch.tensor(float("nan"))
    watch.update({"loss": one, "kd": one, "teacher": torch.full((2, 3), 1e30)}, epoch=0, batch=0, step=0)
    assert watch.first_bad() is None
    watch.update({"loss": one, "ce": one}, epoch=1, batch=2, step=6)  # values of another phase
    watch.update({"loss": nan, "kd": one, "teacher": torch.tensor([[1.0, float("inf")]])}, epoch=1, batch=3, step=7)
    watch.update({"loss": nan, "ce": nan}, epoch=1, batch=4, step=8)  # later ones change nothing
    assert watch.first_bad() == (1, 3, 7, ["loss", "teacher"])
    assert watch.first_bad() is None  # checked steps are forgotten


def nan_teacher(path: str, folder: Path) -> str:
    """A copy of checkpoint `path` whose classifier answers NaN (a diverged teacher from elsewhere)."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["state_dict"]["model.classifier.bias"].fill_(float("nan"))
    torch.save(checkpoint, folder / "nan_teacher.ckpt")
    return str(folder / "nan_teacher.ckpt")


@pytest.mark.parametrize("cache", ["auto", "false"])
def test_teacher_with_non_finite_outputs_is_refused_before_it_is_used_or_cached(data_dir, outputs, teachers,
                                                                               tmp_path, cache):
    bad = nan_teacher(teachers["cnn1d"]["checkpoints"]["last"], tmp_path)
    cfg = distill_config(data_dir, outputs, f"teacher.checkpoint={bad}", f"teacher.cache={cache}",
                         f"run_name=nan_teacher_{cache}")
    with pytest.raises(NonFiniteError, match=rf"the teacher in {bad} \(cnn1d\) answers training examples with "
                                             r"non-finite outputs"):
        run_distill(cfg, quiet=True)
    assert not list((outputs / "distill").glob("nan_teacher*"))


class PartlyInfinite(nn.Module):
    """Answers +inf for the examples whose first input value is above the batch median, 0 for the others."""

    num_classes = 10

    def forward(self, x):
        first = x.flatten(1)[:, 0]
        return torch.where((first > first.median())[:, None], float("inf"), 0.0).expand(len(x), 10)


def test_teacher_cache_refuses_non_finite_outputs_before_storing_them(data_dir, tmp_path, teachers):
    teacher = teachers["cnn1d"]["checkpoints"]["last"]
    cfg = distill_config(data_dir, tmp_path, "teacher=cached", f"teacher.checkpoint={teacher}")
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    with pytest.raises(NonFiniteError, match=r"gives non-finite outputs \(NaN or infinite\) on \d+ of 256 training "
                                             r"examples \(e.g. example \d+\)"):
        cached_teacher(FrozenTeacher(PartlyInfinite()), datamodule, cfg, [teacher], "single")
    assert not list(tmp_path.glob("teacher_cache/*")), "non-finite outputs were stored"


# ----------------------------------------------------------------------------------------------- unreadable checkpoints
def test_resume_checkpoint_that_cannot_be_used_names_the_file_and_the_fix(data_dir, outputs, teachers):
    config = ("trainer.max_epochs=2", "run_name=resumed")
    with pytest.raises(SimulatedKill):
        run_train(train_config(data_dir, outputs, *config, *KILL_AT_EPOCH_1), quiet=True)
    folder = next((outputs / "train").glob("resumed-*"))
    last, best = folder / "checkpoints" / "last.ckpt", folder / "checkpoints" / "best.ckpt"
    resume = lambda: run_train(train_config(data_dir, outputs, *config, "resume=true"), quiet=True)  # noqa: E731
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # cut short
    before = files_of(folder)
    with pytest.raises(CheckpointError, match=rf"^{last} cannot be read: it is truncated .*; rerun=true starts this "
                                              rf"run over .*, or resume from its best epoch: cp {best} {last} and "
                                              r"pass resume=true again$"):
        resume()
    assert files_of(folder) == before
    shutil.copyfile(teachers["cnn1d"]["checkpoints"]["last"], last)  # another model's
    with pytest.raises(CheckpointError, match=rf"^{last} holds another model's weights than this run's .*; rerun=true"):
        resume()
    shutil.copyfile(best, last)  # the fix the first message names
    assert resume()["epochs"] == 2


def test_unreadable_teacher_checkpoint_names_the_file_and_the_fix(data_dir, outputs, teachers, tmp_path):
    good = teachers["cnn1d"]["checkpoints"]["last"]
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(Path(good).read_bytes()[:2000])
    for teacher in ([f"teacher.checkpoint={cut}"], ["teacher=ensemble", f"teacher.checkpoints=[{good},{cut}]"]):
        key = teacher[-1].split("=")[0]
        with pytest.raises(CheckpointError, match=rf"^{cut} cannot be read: .*; set {key} to a checkpoint that reads"):
            run_distill(distill_config(data_dir, outputs, *teacher), quiet=True)
    # A teacher this codebase trained and reuses, whose last checkpoint got damaged: its run is named.
    own = Path(run_train(compose_config("train", tiny_overrides(data_dir, tmp_path, "model=cnn1d")),
                         quiet=True)["run_dir"])
    (own / "checkpoints" / "last.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=rf"use its run's best epoch instead \(teacher.checkpoint={own}/"
                                              rf"checkpoints/best.ckpt\); or move the teacher's run aside "
                                              rf"\(mv {own} {own}.damaged\)"):
        run_distill(distill_config(data_dir, tmp_path, "teacher/model=cnn1d"), quiet=True)


# ----------------------------------------------------------------------------------------------- honest records
def test_teacher_checkpoint_is_recorded_as_its_own_model(data_dir, outputs, teachers):
    checkpoint = f"teacher.checkpoint={teachers['cnn1d']['checkpoints']['last']}"
    record = run_distill(distill_config(data_dir, outputs, checkpoint), quiet=True)  # teacher/model left at default
    assert record["config"]["teacher"]["model"]["name"] == "cnn1d" and "-cnn1d-mlp1d-" in record["run_dir"]
    assert config_value(Record("r", record), "teacher.model.name") == "cnn1d"
    # Naming the architecture or not is the same run: the same folder, reused.
    named = run_distill(distill_config(data_dir, outputs, checkpoint, "teacher/model=cnn1d"), quiet=True)
    assert named["run_dir"] == record["run_dir"] and named["wall_time_s"] == record["wall_time_s"]


def test_ensemble_of_checkpoints_is_recorded_member_by_member(data_dir, outputs, teachers):
    cnn1d, mlp1d = (teachers[name]["checkpoints"]["last"] for name in ("cnn1d", "mlp1d"))
    record = run_distill(distill_config(data_dir, outputs, "teacher=ensemble",
                                        f"teacher.checkpoints=[{cnn1d},{mlp1d}]"), quiet=True)
    teacher = record["config"]["teacher"]
    assert teacher["model"]["name"] == "cnn1d" and teacher["models"] == ["cnn1d", "mlp1d"]
    assert config_value(Record("r", record), "teacher.models") == "cnn1d+mlp1d"
    same = distill_config(data_dir, outputs, "teacher=ensemble", f"teacher.checkpoints=[{cnn1d},{cnn1d}]")
    check_config(same)
    assert same.teacher.model.name == "cnn1d" and same.teacher.models is None
