"""Training phases: a pre-training phase trains only what it names, with only its terms, and the
learning-rate schedule counts main-phase epochs only; the old key kd.stages is refused with the new one."""
import pytest
import pytorch_lightning as pl
import torch

from errors import ConfigError
from runs.training import build_distillation, build_trainer
from tasks.phases import Phase, parse_phases, phase_at
from tests.helpers import compose_config, tiny_overrides


def test_phase_lookup_and_validation():
    phases = parse_phases({"phases": [{"name": "init", "epochs": 2, "terms": {"crd": 1.0}, "train": ["objective"]},
                                      {"name": "off", "epochs": 0, "terms": {"crd": 1.0}}]}, ["ce", "crd"])
    assert phases == [Phase("init", 2, {"crd": 1.0}, ("objective",))]
    assert [phase_at(phases, e) for e in range(3)] == [phases[0], phases[0], None]
    with pytest.raises(ConfigError, match=r"names terms \['ab'\] that kd.terms does not define"):
        parse_phases({"phases": [{"epochs": 1, "terms": {"ab": 1.0}}]}, ["ce", "crd"])
    with pytest.raises(ConfigError, match="train naming some of"):
        parse_phases({"phases": [{"epochs": 1, "terms": {"crd": 1.0}, "train": ["teacher"]}]}, ["ce", "crd"])
    with pytest.raises(ConfigError, match="kd.stages was renamed kd.phases"):
        parse_phases({"stages": [{"epochs": 1, "terms": {"crd": 1.0}}]}, ["ce", "crd"])


def test_pre_training_scale_keeps_phases_in_proportion_and_is_hashed_only_when_set(data_dir, tmp_path):
    published = {"phases": [{"name": "init", "epochs": 30, "terms": {"crd": 1.0}},
                            {"name": "b", "epochs": 2, "terms": {"crd": 1.0}}]}
    assert [s.epochs for s in parse_phases(published, ["crd"], pre_training_scale=0.125)] == [4, 1]
    with pytest.raises(ConfigError, match="pre_training_scale must be > 0"):
        parse_phases(published, ["crd"], pre_training_scale=0)
    from runs.folders import config_digest
    base = compose_config("distill", tiny_overrides(data_dir, tmp_path, "kd=ab"))
    same = compose_config("distill", tiny_overrides(data_dir, tmp_path, "kd=ab", "pre_training_scale=1.0"))
    scaled = compose_config("distill", tiny_overrides(data_dir, tmp_path, "kd=ab", "pre_training_scale=0.5"))
    assert config_digest(base) == config_digest(same) != config_digest(scaled)


def test_pre_training_phase_trains_only_what_it_names(data_dir, tmp_path):
    cfg = compose_config("distill", tiny_overrides(
        data_dir, tmp_path, "~experiment", "kd=crd", "student=mlp1d", "teacher/model=mlp1d",
        "kd.terms.crd.num_negatives=16", "scheduler=multistep", "scheduler.milestones=[1]",
        "+kd.phases=[{name: init, epochs: 1, terms: {crd: 1.0}, train: [objective]}]"))
    cfg.run_dir = str(tmp_path / "run")
    datamodule, task, _ = build_distillation(cfg)
    student_start = {k: v.clone() for k, v in task.model.state_dict().items()}
    embed_start = task.objective.terms["crd"].embed_student.linear.weight.clone()
    snapshots, rates = {}, []

    class Snapshot(pl.Callback):
        def on_train_epoch_start(self, trainer, module):
            rates.append(trainer.optimizers[0].param_groups[0]["lr"])

        def on_train_epoch_end(self, trainer, module):
            snapshots[trainer.current_epoch] = ({k: v.clone() for k, v in module.model.state_dict().items()},
                                                module.objective.terms["crd"].embed_student.linear.weight.clone())

    trainer = build_trainer(cfg, [Snapshot()], extra_epochs=1)
    trainer.fit(task, datamodule)
    assert trainer.current_epoch == 2  # one pre-training epoch + trainer.max_epochs=1
    student_after_init, embed_after_init = snapshots[0]
    assert all(torch.equal(student_start[k], v) for k, v in student_after_init.items()), \
        "the student (weights and BatchNorm statistics) must not move in a phase that trains only the objective"
    assert not torch.equal(embed_start, embed_after_init)
    student_after_main, _ = snapshots[1]
    assert any(not torch.equal(student_after_init[k], v) for k, v in student_after_main.items())
    # The schedule ignores the pre-training epoch: the first main epoch still runs at the initial rate,
    # and milestone 1 is reached only after it.
    assert rates == pytest.approx([0.05, 0.05])
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.005)


def test_each_phase_starts_a_fresh_optimizer_at_its_own_lr(data_dir, tmp_path):
    """RepDistiller's pre-training builds its own SGD (e.g. at lr 0.01 for FT), and the main loop another: no
    momentum crosses a phase boundary, and the main phase runs at the configured lr."""
    cfg = compose_config("distill", tiny_overrides(
        data_dir, tmp_path, "~experiment", "kd=crd", "student=mlp1d", "teacher/model=mlp1d", "optimizer.lr=0.05", "scheduler=none",
        "kd.terms.crd.num_negatives=16", "trainer.max_epochs=2",
        "+kd.phases=[{name: a, epochs: 1, terms: {crd: 1.0}, train: [objective], lr: 0.01},"
        "{name: b, epochs: 1, terms: {crd: 1.0}, train: [objective, student]}]"))
    cfg.run_dir = str(tmp_path / "run")
    datamodule, task, _ = build_distillation(cfg)
    seen, modes = [], []

    class Watch(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            optimizer = trainer.optimizers[0]
            seen.append((trainer.current_epoch, batch_idx, optimizer.param_groups[0]["lr"], len(optimizer.state)))
            modes.append((trainer.current_epoch, module.model.training))

    trainer = build_trainer(cfg, [Watch()], extra_epochs=2)
    trainer.fit(task, datamodule)
    firsts = [(epoch, lr, state) for epoch, batch, lr, state in seen if batch == 0]
    assert firsts == [(0, pytest.approx(0.01), 0), (1, pytest.approx(0.05), 0), (2, pytest.approx(0.05), 0),
                      (3, pytest.approx(0.05), firsts[3][2])]
    assert firsts[3][2] > 0, "inside the main phase the optimizer keeps its momentum from epoch to epoch"
    assert all(state > 0 for epoch, batch, lr, state in seen if batch > 0), "state builds up within a phase"
    assert sorted(set(modes)) == [(0, False), (1, True), (2, True), (3, True)], \
        "the student is frozen (eval mode) only in the phase that does not train it"
    with pytest.raises(ConfigError, match=r"kd.phases\[0\].lr \(a\) must be a learning rate > 0"):
        parse_phases({"phases": [{"name": "a", "epochs": 1, "terms": {"crd": 1.0}, "lr": -1}]}, ["crd"])
