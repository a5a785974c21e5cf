"""Valid values a user would want a word about: one `warning:` line on stderr, saying what is used instead, and
the run goes on (runs/notices.py, make_table's axes)."""
from __future__ import annotations

import json

import pytest

from runs import notices
from runs.configs import compose
from runs.training import build_datamodule
from runs.validation import check_config
from scripts import make_table
from tests.helpers import tiny_overrides


@pytest.fixture(autouse=True)
def fresh_notices(monkeypatch):
    monkeypatch.setattr(notices, "_shown", set())


def warnings_of(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.mark.parametrize("overrides,expected", [
    (["scheduler=multistep", "trainer.max_epochs=30"],
     "warning: scheduler.milestones [150, 180, 210] lie at or past the last epoch (trainer.max_epochs=30): the "
     "learning rate never decays there; scale them to the run (e.g. for 240-epoch milestones [150,180,210] on 30 "
     "epochs: [19, 22, 26])"),
    (["teacher=ensemble", "teacher.size=1"], "warning: teacher=ensemble has one member: it is that teacher alone"),
])
def test_a_config_accepted_with_a_word(overrides, expected, capsys):
    check_config(compose("distill", overrides))
    lines = warnings_of(capsys)
    assert len(lines) == 1 and lines[0].startswith(expected), lines
    check_config(compose("distill", overrides))
    assert warnings_of(capsys) == [], "said twice in one process"


def test_sizes_beyond_the_data_say_what_is_used(data_dir, tmp_path, capsys):
    cfg = compose("train", tiny_overrides(data_dir, tmp_path, "data.train_subset=100000", "data.batch_size=8000"))
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    notices.data_notices(cfg, datamodule)
    examples = len(datamodule.train_indices)
    assert warnings_of(capsys) == [
        f"warning: data.train_subset=100000 is more than the {examples} training examples of mnist1d (after "
        f"data.val_size): all {examples} are used",
        f"warning: data.batch_size=8000 is more than the {examples} training examples: each epoch is one batch of "
        f"{examples}"]


def test_a_teacher_checkpoint_of_another_model_than_teacher_model_is_named(tmp_path, capsys):
    import torch
    from models.checkpoints import MODEL_CONFIG_KEY
    checkpoint = tmp_path / "teacher.ckpt"
    torch.save({MODEL_CONFIG_KEY: {"name": "mlp1d", "_target_": "models.build_model"}, "state_dict": {}}, checkpoint)
    cfg = compose("distill", ["teacher/model=cnn1d", f"teacher.checkpoint={checkpoint}"])
    check_config(cfg)
    lines = warnings_of(capsys)
    assert len(lines) == 1 and lines[0].startswith("warning: teacher.checkpoint holds a mlp1d, not the "
                                                   "teacher/model=cnn1d named beside it")
    assert cfg.teacher.model.name == "mlp1d"


def test_a_table_key_no_record_has_is_named_with_the_nearest(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    record = {"task": "train", "run_dir": "run", "seed": 0, "config": {"model": {"name": "mlp1d"}, "seed": 0},
              "last": {"test/top1": 0.5}, "best": {"test/top1": 0.5, "epoch": 0}}
    (tmp_path / "run" / "record.json").write_text(json.dumps(record))
    make_table.main([str(tmp_path), "--rows", "model.nmae", "--cols", "", "--epoch", "last", "--print", "none"])
    lines = warnings_of(capsys)
    assert lines == ["warning: --rows model.nmae: no selected record has this config key, so its labels are all '-'; "
                     "did you mean model.name? (keys are dotted paths into record.json's config, e.g. kd.name, "
                     "student.name)"]
