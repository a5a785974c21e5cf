"""Fidelity ("Does Knowledge Distillation Really Work?", Stanton et al., NeurIPS 2021; code: samuelstanton/gnosis):
its CIFAR-100 ensemble-distillation cells (with and without mixup) and its IMDB LSTM cell. No numbers are
published in files: the paper reports fidelity in plots."""
from __future__ import annotations

from dataclasses import dataclass

from scripts.experiments.cells import Cell, sgd

GN_IMAGE = "config/image_classification.yaml"
GN_TEXT = "config/text_classification.yaml"


@dataclass(frozen=True)
class Recipe:
    """A gnosis distillation recipe as rows (key, value, where gnosis sets it), in the order they are written."""
    source: str
    data: tuple
    epochs: tuple[int, str]
    eta_min_note: str
    teacher: tuple
    terms: tuple


IMAGE = Recipe(
    GN_IMAGE,
    (("data.batch_size", 128, f"{GN_IMAGE} (distillation)"), ("data.val_size", 0, "gnosis evaluates on the test set"),
     ("data.mean", [0.5, 0.5, 0.5], "gnosis unitcube: pixels in [-1, 1]"), ("data.std", [0.5, 0.5, 0.5], "gnosis unitcube")),
    (300, f"{GN_IMAGE} (distillation)"), f"{GN_IMAGE} CosineAnnealingLR eta_min",
    (("teacher.size", 3, "README: 3 teachers (trial_id=0,1,2)"),
     ("teacher.recipe.trainer.max_epochs", 200, "README teacher command trainer.num_epochs=200"),
     ("teacher.recipe.optimizer.lr", 0.1, "README teacher command trainer.optimizer.lr=0.1"),
     ("teacher.recipe.data.batch_size", 256, "README teacher command dataloader.batch_size=256"),
     ("teacher.recipe.scheduler.eta_min", 0.0, "README teacher command trainer.lr_scheduler.eta_min=0."),
     ("teacher.recipe.seed", 0, "members seeds 0, 1, 2 for every student seed (trial_id=0,1,2)")),
    (("ce.weight", 0.0, "loss alpha 0.0: no hard-label term"), ("kd.weight", 1.0, "(1 - alpha) soft-target term"),
     ("kd.temperature", 4.0, "distill_loader temp 4.0 for images (REFERENCE.md)")))
TEXT = Recipe(
    GN_TEXT,
    (("data.batch_size", 10, f"{GN_TEXT} dataloader.batch_size"), ("data.val_size", 0, f"{GN_TEXT} eval_dataset: test")),
    (100, f"{GN_TEXT} trainer.num_epochs"), f"{GN_TEXT} lr_scheduler eta_min",
    (("teacher.size", 3, "README: 3 LSTM teachers (trial_id=0,1,2)"),
     ("teacher.recipe.seed", 0, "members seeds 0, 1, 2 for every student seed")),
    (("ce.weight", 0.0, "config/loss/ts_fwd_cross_ent.yaml alpha 0.0"), ("kd.weight", 1.0, "(1 - alpha) soft-target term"),
     ("kd.temperature", 1.0, f"{GN_TEXT} distill_loader.temp 1.0")))


def gnosis_cell(name: str, header: list[str], defaults: list, recipe: Recipe) -> Cell:
    cell = Cell(name, header, defaults)
    cell.set("baseline", False)
    cell.set_rows("", recipe.data)
    cell.set("trainer.max_epochs", *recipe.epochs)
    sgd(cell, 5.0e-2, 1.0e-4, recipe.source, nesterov=True)
    cell.set("scheduler.eta_min", 1.0e-6, recipe.eta_min_note)
    cell.set_rows("", recipe.teacher)
    cell.set_rows("kd.terms", recipe.terms)
    return cell


def image_cell(augment: str) -> Cell:
    name = f"fidelity/kd_{'mixup_' if augment == 'mixup' else ''}ens3_preresnet20_preresnet20"
    header = [
        "\"Does Knowledge Distillation Really Work?\" (Stanton et al., NeurIPS 2021; code: gnosis), CIFAR-100: an",
        f"ensemble of 3 ResNet-20 teachers -> one ResNet-20 student, {'mixup (alpha 1) ' if augment == 'mixup' else 'no extra'}",
        "distillation data. The paper reports fidelity (top-1 agreement, predictive KL) in plots only; gnosis ships no",
        "result files (REFERENCE.md). Recipe (gnosis config/image_classification.yaml, README.md): students 300 epochs,",
        "SGD lr 5e-2 momentum 0.9 Nesterov, weight decay 1e-4, batch 128, cosine to 1e-6; loss alpha 0.0 (no hard-label",
        "CE: pure soft targets) at T 4; teachers 3 ResNet-20 (README: \"train 3 ResNet-20 image classifiers on",
        "CIFAR-100\", trial_id=0,1,2) for 200 epochs at lr 0.1, batch 256, eta_min 0. Models: gnosis's PreResNet-20",
        "(preresnet20); inputs: its \"unitcube\" [-1, 1] scaling (data.mean = data.std = 0.5 per channel).",
        "Our KD term is T^2 KL(teacher || student), whose gradient equals gnosis's T^2-scaled soft cross-entropy.",
    ]
    if augment == "mixup":
        header.append("Mixup: README \"distill_loader.mixup_alpha=1.\"; the teacher labels the mixed inputs.")
    header.append(f"  python distill_train.py experiment={name} trainer=gpu")
    cell = gnosis_cell(name, header, [("data", "cifar100"), ("student", "preresnet20"), ("teacher", "ensemble"),
                                      ("teacher/model", "preresnet20"), ("kd", "kd"), ("augment", augment),
                                      ("optimizer", "sgd"), ("scheduler", "cosine")], IMAGE)
    if augment == "mixup":
        cell.set("augment.alpha", 1.0, "README distill_loader.mixup_alpha=1.")
    return cell


def text_cell() -> Cell:
    name = "fidelity/kd_ens3_lstm_lstm_imdb"
    header = [
        "\"Does Knowledge Distillation Really Work?\" (Stanton et al., NeurIPS 2021; code: gnosis), IMDB: an ensemble of",
        "3 bidirectional LSTM teachers -> one LSTM student (gnosis config/classifier/lstm.yaml, our model=lstm). Fidelity",
        "is reported in the paper's plots only. Recipe (gnosis config/text_classification.yaml at 09272f5,",
        "config/loss/ts_fwd_cross_ent.yaml, config/dataset/imdb.yaml, README.md): 100 epochs, SGD lr 5e-2 momentum 0.9",
        "Nesterov, weight decay 1e-4, batch 10, cosine to 1e-6; loss alpha 0.0 (pure soft targets) at T 1.0; teachers: 3",
        "LSTMs (README: \"train 3 LSTM text classifiers on IMDB\", trial_id=0,1,2) with the same recipe. IMDB offline:",
        "extract aclImdb_v1.tar.gz into the data folder.",
        f"  python distill_train.py experiment={name} trainer=gpu",
    ]
    return gnosis_cell(name, header, [("data", "imdb"), ("student", "lstm"), ("teacher", "ensemble"),
                                      ("teacher/model", "lstm"), ("kd", "kd"), ("augment", "none"), ("optimizer", "sgd"),
                                      ("scheduler", "cosine")], TEXT)


def build() -> list[Cell]:
    return [image_cell("none"), image_cell("mixup"), text_cell()]
