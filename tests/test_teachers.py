"""Teachers: ensembles, cross-fitting (each training example labelled by the one teacher that never saw
it), teacher-call budgets; all through the real entry functions on tiny mnist1d, plus their bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from errors import ConfigError
from models.teachers import CrossFitTeacher, FrozenTeacher, log_mean_probability
from runs.training import build_datamodule, run_distill, run_train
from tests.helpers import compose_config, tiny_overrides


class Constant(nn.Module):
    """Answers the same logits for every input: lets a test see which member answered."""

    def __init__(self, logits, num_classes=3):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("logits", torch.tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.logits.expand(len(x), -1)


def test_ensemble_is_the_log_of_the_mean_probability():
    a, b = [2.0, 0.0, -1.0], [0.0, 3.0, 0.0]
    teacher = FrozenTeacher([Constant(a), Constant(b)])
    logits, _ = teacher(torch.zeros(2, 1))

    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]
    expected = [math.log((p + q) / 2) for p, q in zip(softmax(a), softmax(b))]
    assert logits[0].tolist() == pytest.approx(expected, rel=1e-6)
    assert logits.exp().sum(dim=1).tolist() == pytest.approx([1.0, 1.0])
    assert torch.equal(log_mean_probability([torch.tensor([[1.0, 2.0]])]), torch.tensor([[1.0, 2.0]]))


def test_ensemble_members_must_agree_on_classes_and_feature_member_in_range():
    with pytest.raises(ConfigError, match="different numbers of classes"):
        FrozenTeacher([Constant([0.0] * 3), Constant([0.0] * 4, num_classes=4)])
    with pytest.raises(ConfigError, match="feature_member=2 is out of range"):
        FrozenTeacher([Constant([0.0] * 3), Constant([0.0] * 3)], feature_member=2)


def crossfit_datamodule(data_dir, *extra):
    cfg = compose_config("train", tiny_overrides(data_dir, data_dir, *extra))
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    return datamodule


@pytest.mark.parametrize("folds", [2, 3])
def test_each_training_example_is_seen_by_k_minus_1_teachers_and_labelled_by_the_other(data_dir, folds):
    pools = [set(crossfit_datamodule(data_dir, f"data.crossfit.folds={folds}", f"data.crossfit.fold={i}")
                 .train_set.indices.tolist()) for i in range(folds)]
    student_data = crossfit_datamodule(data_dir)
    training = student_data.train_indices.tolist()
    assert not set(student_data.val_indices.tolist()) & set().union(*pools), "validation belongs to no fold"
    for index in training:
        assert sum(index in pool for pool in pools) == folds - 1
    # Fold teacher k answers with class k: the answer names the teacher that labelled the example.
    members = [Constant([10.0 if c == k else 0.0 for c in range(3)]) for k in range(folds)]
    teacher = CrossFitTeacher(members, torch.from_numpy(student_data.fold_assignment(folds)))
    indices = torch.tensor(training)
    labeller = teacher(torch.zeros(len(indices), 1), indices)[0].argmax(dim=1).tolist()
    for index, k in zip(training, labeller):
        assert index not in pools[k] and all(index in pools[j] for j in range(folds) if j != k)
    sizes = np.bincount(labeller, minlength=folds)
    assert sizes.max() - sizes.min() <= 1  # balanced folds
    held_out, _ = teacher(torch.zeros(2, 1))  # validation / test: the ensemble of all fold teachers
    assert torch.allclose(held_out, log_mean_probability([m(torch.zeros(2, 1)) for m in members]))


def test_crossfit_fold_out_of_range_is_one_clear_error(data_dir):
    with pytest.raises(ConfigError, match="data.crossfit.fold=3 is out of range for 3 folds; use 0 to 2"):
        crossfit_datamodule(data_dir, "data.crossfit.folds=3", "data.crossfit.fold=3")
    with pytest.raises(ConfigError, match="folds must be an integer >= 2"):
        crossfit_datamodule(data_dir, "data.crossfit.folds=1", "data.crossfit.fold=0")


def distill(data_dir, outputs, *extra):
    return run_distill(compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment", "student=mlp1d",
                                                                "teacher/model=mlp1d", *extra)), quiet=True)


def test_crossfit_distillation_trains_missing_fold_teachers_and_routes(data_dir, tmp_path):
    record = distill(data_dir, tmp_path, "teacher=crossfit", "teacher.folds=2")
    assert record["teacher_kind"] == "crossfit" and len(record["teacher_run"]) == 2
    import json
    from pathlib import Path
    folds = [json.loads((Path(run) / "record.json").read_text())["config"]["data"]["crossfit"]
             for run in record["teacher_run"]]
    assert folds == [{"folds": 2, "fold": 0}, {"folds": 2, "fold": 1}]
    again = distill(data_dir, tmp_path, "teacher=crossfit", "teacher.folds=2", "seed=1")
    assert again["teacher_run"] != record["teacher_run"]  # teachers follow the run's seed, as single ones do
    with pytest.raises(ConfigError, match="lists 1 fold teachers but teacher.folds=2"):
        distill(data_dir, tmp_path, "teacher=crossfit", "teacher.folds=2",
                f"teacher.checkpoints=[{record['teacher_checkpoint'][0]}]")
    with pytest.raises(ConfigError, match="use teacher=crossfit"):
        distill(data_dir, tmp_path, "data.crossfit.folds=2", "data.crossfit.fold=0")


def test_ensemble_distillation_trains_members_with_consecutive_seeds(data_dir, tmp_path):
    record = distill(data_dir, tmp_path, "teacher=ensemble", "teacher.size=2", "seed=3")
    assert record["teacher_kind"] == "ensemble" and len(record["teacher_checkpoint"]) == 2
    import json
    from pathlib import Path
    seeds = [json.loads((Path(run) / "record.json").read_text())["seed"] for run in record["teacher_run"]]
    assert seeds == [3, 4]
    assert 0 <= record["last"]["test/agreement"] <= 1
    mixed = distill(data_dir, tmp_path, "teacher=ensemble", "teacher.models=[mlp1d,cnn1d]")
    assert mixed["teacher_model"] == ["mlp1d", "cnn1d"]
    with pytest.raises(ConfigError, match=r"teacher.models=\['resnet9000'\]: must be a list of model configs"):
        distill(data_dir, tmp_path, "teacher=ensemble", "teacher.models=[resnet9000]")


def test_ensemble_of_teachers_with_different_class_counts_stops(data_dir, tmp_path):
    ten = distill(data_dir, tmp_path)["teacher_checkpoint"]
    four = run_train(compose_config("train", [*tiny_overrides(data_dir, tmp_path, "model=mlp1d"), "data=synthetic",
                                              "data.num_classes=4", "data.input_shape=[1,40]", "data.n_train=300",
                                              "data.val_size=0"]), quiet=True)["checkpoints"]["last"]
    with pytest.raises(ConfigError, match="members predict different numbers of classes"):
        distill(data_dir, tmp_path, "teacher=ensemble", f"teacher.checkpoints=[{ten},{four}]")


def test_teacher_budget_limits_the_examples_that_reach_the_teacher(data_dir, tmp_path):
    record = distill(data_dir, tmp_path, "teacher.budget=100", "trainer.max_epochs=2", "teacher.cache=false")
    assert record["teacher_examples"] == 100 and record["teacher_calls"] == 2 * 100  # asked every epoch
    unlimited = distill(data_dir, tmp_path, "teacher.cache=false")
    assert unlimited["teacher_examples"] == 256 and unlimited["teacher_calls"] == 256
    # mnist1d has no random transform and kd reads logits only: the outputs are computed once, automatically
    # (teacher.cache is not part of the run's hash: the same config with cache=auto reuses the run above)
    cached = distill(data_dir, tmp_path, "teacher.budget=100", "trainer.max_epochs=3")
    assert cached["teacher_cache"]["automatic"] and cached["teacher_calls"] == 100
    with pytest.raises(ConfigError, match=r"teacher.budget=999 is more than the 256 training examples"):
        distill(data_dir, tmp_path, "teacher.budget=999")
