"""Fidelity ("Does Knowledge Distillation Really Work?", Stanton et al., NeurIPS 2021; code: samuelstanton/gnosis):
its CIFAR-100 distillation (plain, mixup, synthetic GAN data) and IMDB LSTM distillation, each from one teacher
(the README's commands, which leave teacher.num_components at 1) and, for plain, mixup and IMDB, from a 3-member
ensemble (the paper's ensemble teachers, e.g. its Fig. 1b; gnosis teacher.num_components=3). No numbers are
published in files: the paper reports fidelity in plots, the repository ships no results."""
from __future__ import annotations

from dataclasses import dataclass

from scripts.experiments.cells import Cell, sgd

GN = "samuelstanton/gnosis"
GN_IMAGE = "config/image_classification.yaml"
GN_TEXT = "config/text_classification.yaml"
FP32 = "fp32, as the anchor trained; trainer.precision=bf16-mixed is an opt-in speed switch"
SINGLE = ("One teacher: the README's distill commands leave teacher.num_components at 1 ({config}), and",
          "scripts/{script}.py's select_ckpts gives trial i the teacher of trial i, so each student seed here",
          "distils from the teacher trained with its own seed (teacher=single, teacher.recipe.seed null).")
ENSEMBLE = ("Teacher: an ensemble of 3 (the paper's ensemble teachers, e.g. its Fig. 1b; gnosis",
            "teacher.num_components=3, where select_ckpts hands every trial all 3 checkpoints): members trained",
            "with seeds 0, 1, 2 for every student seed (teacher.recipe.seed 0).")


@dataclass(frozen=True)
class Recipe:
    """A gnosis distillation recipe as rows (key, value, where gnosis sets it), in the order they are written."""
    config: str
    script: str
    data: tuple
    epochs: tuple[int, str]
    teacher: tuple  # a single teacher's recipe; ensembles add their size and seed
    terms: tuple


IMAGE = Recipe(
    GN_IMAGE, "image_classification",
    (("data.batch_size", 128, f"{GN_IMAGE} dataloader.batch_size"), ("data.val_size", 0,
                                                                      f"{GN_IMAGE} eval_dataset: test"),
     ("data.mean", [0.5, 0.5, 0.5], "gnosis unitcube: pixels in [-1, 1]"), ("data.std", [0.5, 0.5, 0.5],
                                                                             "gnosis unitcube")),
    (300, f"{GN_IMAGE} trainer.num_epochs"),
    (("teacher.recipe.trainer.max_epochs", 200, "README teacher command trainer.num_epochs=200"),
     ("teacher.recipe.optimizer.lr", 0.1, "README teacher command trainer.optimizer.lr=0.1"),
     ("teacher.recipe.data.batch_size", 256, "README teacher command dataloader.batch_size=256"),
     ("teacher.recipe.scheduler.eta_min", 0.0, "README teacher command trainer.lr_scheduler.eta_min=0.")),
    (("ce.weight", 0.0, "config/loss/ts_fwd_cross_ent.yaml alpha 0.0: no hard-label term"),
     ("kd.weight", 1.0, "(1 - alpha) soft-target term"),
     ("kd.temperature", 4.0, f"{GN_IMAGE} distill_loader.temp 4.0")))
TEXT = Recipe(
    GN_TEXT, "text_classification",
    (("data.batch_size", 10, f"{GN_TEXT} dataloader.batch_size"), ("data.val_size", 0,
                                                                   f"{GN_TEXT} eval_dataset: test")),
    (100, f"{GN_TEXT} trainer.num_epochs"),
    (),
    (("ce.weight", 0.0, "config/loss/ts_fwd_cross_ent.yaml alpha 0.0"),
     ("kd.weight", 1.0, "(1 - alpha) soft-target term"),
     ("kd.temperature", 1.0, f"{GN_TEXT} distill_loader.temp 1.0")))


def gnosis_cell(name: str, header: list[str], defaults: list, recipe: Recipe, ensemble: bool) -> Cell:
    header = [*header, *(line.format(config=recipe.config, script=recipe.script)
                         for line in (ENSEMBLE if ensemble else SINGLE)),
              "Precision: fp32, as gnosis trained.",
              f"  python distill_train.py experiment={name} trainer=gpu"]
    cell = Cell(name, header, defaults)
    cell.set("baseline", False)
    cell.set_rows("", recipe.data)
    cell.set("trainer.max_epochs", *recipe.epochs)
    cell.set("trainer.precision", "32-true", FP32)
    sgd(cell, 5.0e-2, 1.0e-4, f"{GN} {recipe.config}", nesterov=True)
    cell.set("scheduler.eta_min", 1.0e-6, f"{recipe.config} CosineAnnealingLR eta_min")
    if ensemble:
        cell.set("teacher.size", 3, "teacher.num_components=3")
    cell.set_rows("", recipe.teacher)
    if ensemble:
        cell.set("teacher.recipe.seed", 0, "members seeds 0, 1, 2 for every student seed")
    cell.set_rows("kd.terms", recipe.terms)
    return cell


IMAGE_DATA = {"none": ("no extra distillation data", "README \"distill image classifiers\""),
              "mixup": ("mixup (alpha 1, one lam per batch, the teacher labelling the mixed inputs)",
                        "README \"distill_loader.mixup_alpha=1.\"; gnosis/distillation/dataloaders.py mixup_data"),
              "synthetic": ("synthetic GAN data (synth_ratio 0.2)", "README \"distill_loader.synth_ratio=0.2\"")}


def image_cell(augment: str, ensemble: bool) -> Cell:
    extra = "" if augment == "none" else f"{augment}_"
    name = f"fidelity/kd_{extra}{'ens3_' if ensemble else ''}preresnet20_preresnet20"
    title, source = IMAGE_DATA[augment]
    header = [
        "\"Does Knowledge Distillation Really Work?\" (Stanton et al., NeurIPS 2021; code samuelstanton/gnosis),",
        f"CIFAR-100: {'an ensemble of 3 ResNet-20 teachers' if ensemble else 'one ResNet-20 teacher'} -> one ResNet-20",
        f"student, {title} ({source}). The paper reports fidelity (top-1 agreement, predictive KL) in plots only;",
        "gnosis ships no result files. Recipe (gnosis config/image_classification.yaml, README.md): students 300",
        "epochs, SGD lr 5e-2 momentum 0.9 Nesterov, weight decay 1e-4, batch 128, cosine to 1e-6; loss alpha 0.0 (no",
        "hard-label CE: pure soft targets) at T 4; teachers trained first (README: \"train 3 ResNet-20 image",
        "classifiers on CIFAR-100\", trial_id=0,1,2) for 200 epochs at lr 0.1, batch 256, eta_min 0. Models: gnosis's",
        "PreResNet-20 (preresnet20); inputs: its \"unitcube\" [-1, 1] scaling (data.mean = data.std = 0.5 per",
        "channel). Our KD term is T^2 KL(teacher || student), whose gradient equals gnosis's T^2-scaled soft",
        "cross-entropy (TeacherStudentFwdCrossEntLoss).",
    ]
    if augment == "synthetic":
        header += [
            "Synthetic data (gnosis/distillation/dataloaders.py DistillLoader): each step int(0.2 x 128) = 25 fresh",
            "GAN samples join 103 real examples, and the GAN rows are labelled at synth_temp, 1.0 by default (the",
            "configs never set it), the real ones at temp 4.0, in one soft cross-entropy, each row times its own T^2:",
            "here augment.ratio 0.2 of each 128-row batch (26 rows) is replaced by generated samples (those real",
            "examples sit out the step) and kd.terms.kd.generated_temperature 1.0. The generator: train one first,",
            "  python scripts/train_gan.py data=cifar100 data.mean=[0.5,0.5,0.5] data.std=[0.5,0.5,0.5]",
            "then pass augment.generator=PATH (its generator.pt). gnosis's is an SN-GAN (ResNet generator, latent",
            "128, 100k generator updates; config/density_model/sngan.yaml); scripts/train_gan.py trains a DCGAN.",
        ]
    cell = gnosis_cell(name, header, [("data", "cifar100"), ("student", "preresnet20"),
                                      ("teacher", "ensemble" if ensemble else "single"),
                                      ("teacher/model", "preresnet20"), ("kd", "kd"), ("augment", augment),
                                      ("optimizer", "sgd"), ("scheduler", "cosine")], IMAGE, ensemble)
    if augment == "mixup":
        cell.set("augment.alpha", 1.0, "README distill_loader.mixup_alpha=1.")
    if augment == "synthetic":
        cell.set("augment.ratio", 0.2, "README distill_loader.synth_ratio=0.2")
        cell.set("augment.temperature", 1.0, "DistillLoader synth_temp default 1.0")
        cell.set("kd.terms.kd.generated_temperature", 1.0, "DistillLoader synth_temp default 1.0 (GAN rows)")
    return cell


def text_cell(ensemble: bool) -> Cell:
    name = f"fidelity/kd_{'ens3_' if ensemble else ''}lstm_lstm_imdb"
    header = [
        "\"Does Knowledge Distillation Really Work?\" (Stanton et al., NeurIPS 2021; code samuelstanton/gnosis), IMDB:",
        f"{'an ensemble of 3 bidirectional LSTM teachers' if ensemble else 'one bidirectional LSTM teacher'} -> one",
        "LSTM student (gnosis config/classifier/lstm.yaml, our model=lstm). Fidelity is reported in the paper's plots",
        "only. Recipe (gnosis config/text_classification.yaml, config/loss/ts_fwd_cross_ent.yaml,",
        "config/dataset/imdb.yaml, README.md): 100 epochs, SGD lr 5e-2 momentum 0.9 Nesterov, weight decay 1e-4,",
        "batch 10, cosine to 1e-6; loss alpha 0.0 (pure soft targets) at T 1.0; teachers trained first with the same",
        "recipe (README: \"train 3 LSTM text classifiers on IMDB\", trial_id=0,1,2). IMDB offline: extract",
        "aclImdb_v1.tar.gz into the data folder.",
    ]
    return gnosis_cell(name, header, [("data", "imdb"), ("student", "lstm"),
                                      ("teacher", "ensemble" if ensemble else "single"), ("teacher/model", "lstm"),
                                      ("kd", "kd"), ("augment", "none"), ("optimizer", "sgd"), ("scheduler", "cosine")],
                       TEXT, ensemble)


def build() -> list[Cell]:
    cells = [image_cell(augment, ensemble=False) for augment in IMAGE_DATA]
    cells += [image_cell(augment, ensemble=True) for augment in ("none", "mixup")]
    return cells + [text_cell(ensemble=False), text_cell(ensemble=True)]
