"""The training step's values reach the logger as `self.log(..., on_step=True, on_epoch=True)` would write them
(tasks/training_log.py): the same columns, steps and values, the epoch means weighted by batch size, every
distillation term included; only the per-step cost differs."""
import csv
from functools import partial

import pytorch_lightning as pl
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from losses import CrossEntropyTerm, DistillationObjective, KDTerm
from models import build_model
from models.teachers import FrozenTeacher
from tasks.classification import ClassificationTask
from tasks.distillation import DistillationTask
from tasks.training_log import EpochMeans


class SelfLogged:
    """The reference: every value through Lightning's self.log at every step, as the task logged before."""

    def log_training_step(self, batch, values, logits, targets):
        self.log("train/loss", values["loss"], on_step=True, on_epoch=True, prog_bar=True)
        self.log_dict({f"train/{name}": value.detach() for name, value in values.items() if name != "loss"},
                      on_epoch=True)
        self.log("train/top1", (logits.argmax(1) == targets).float().mean(), on_step=False, on_epoch=True)

    def on_train_batch_end(self, outputs, batch, batch_idx):
        pass

    def on_train_epoch_end(self):
        pass


class SelfLoggedClassification(SelfLogged, ClassificationTask):
    pass


class SelfLoggedDistillation(SelfLogged, DistillationTask):
    pass


def loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(22, 3, 4, 4, generator=generator)  # batches of 8, 8 and 6: unequal weights in the means
    y = torch.randint(0, 5, (22,), generator=generator)
    return DataLoader(TensorDataset(x, y, torch.arange(22)), batch_size=8)


def task(kind: str, reference: bool) -> pl.LightningModule:
    torch.manual_seed(0)
    optimizer = partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    if kind == "classification":
        cls = SelfLoggedClassification if reference else ClassificationTask
        return cls(build_model("mlp", 5, (3, 4, 4), hidden=(16,)), 5, optimizer)
    teacher = FrozenTeacher(build_model("mlp", 5, (3, 4, 4), hidden=(16,)))
    student = build_model("mlp", 5, (3, 4, 4), hidden=(16,))
    objective = DistillationObjective({"ce": CrossEntropyTerm(0.5), "kd": KDTerm(0.5, 4.0)})
    cls = SelfLoggedDistillation if reference else DistillationTask
    return cls(student, teacher, objective, 5, optimizer, example_input=torch.randn(2, 3, 4, 4), num_train=22)


def fit(module: pl.LightningModule, folder) -> tuple[list[dict], dict]:
    logger = pl.loggers.CSVLogger(folder, name="", version=0)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, logger=logger, log_every_n_steps=2,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader())
    with open(folder / "version_0" / "metrics.csv") as file:
        rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
    return rows, {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/")}


@pytest.mark.parametrize("kind", ["classification", "distillation"])
def test_logged_training_values_match_self_log(kind, tmp_path):
    rows, callback_metrics = fit(task(kind, reference=False), tmp_path / "ours")
    expected_rows, expected_callback_metrics = fit(task(kind, reference=True), tmp_path / "reference")
    assert [sorted(r) for r in rows] == [sorted(r) for r in expected_rows]
    for row, expected in zip(rows, expected_rows):
        assert {k: float(v) for k, v in row.items()} == pytest.approx({k: float(v) for k, v in expected.items()},
                                                                     rel=1e-5)
    names = {key for row in rows for key in row}
    terms = ["loss", "ce", "kd"] if kind == "distillation" else ["loss"]
    assert names >= {"train/top1", *(f"train/{t}_step" for t in terms), *(f"train/{t}_epoch" for t in terms)}
    assert sum("train/loss_step" in row for row in rows) == 3  # 6 steps, logged every 2
    assert sorted(callback_metrics) == sorted(expected_callback_metrics)
    assert callback_metrics == pytest.approx(expected_callback_metrics, rel=1e-5)


def test_epoch_means_weigh_each_step_by_its_batch_size():
    means = EpochMeans()
    means.add({"a": torch.tensor(1.0), "b": torch.tensor(4.0)}, weight=8)
    means.add({"a": torch.tensor(3.0), "b": torch.tensor(2.0)}, weight=2)
    assert {k: float(v) for k, v in means.pop().items()} == pytest.approx({"a": 1.4, "b": 3.6})
    assert means.pop() == {}  # popped: the next epoch starts afresh
    means.add({"a": torch.tensor(1.0)}, weight=1)  # names that change: each mean over the steps that gave it
    means.add({"a": torch.tensor(4.0), "b": torch.tensor(2.0)}, weight=2)
    assert {k: float(v) for k, v in means.pop().items()} == pytest.approx({"a": 3.0, "b": 2.0})
