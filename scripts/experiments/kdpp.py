"""WangYZ1608/Knowledge-Distillation-via-ND (Wang et al., ICCV 2023, "Improving Knowledge Distillation via Regularizing
Feature Norm and Direction"): the KD++ and DKD++ rows of its README's CIFAR-100 table, with the per-pair loss weights
of CIFAR/train_cifar.sh and the recipe of CIFAR/train_cifar_kd.py / train_cifar_dkd.py."""
from __future__ import annotations

from scripts.experiments.cells import FP32_LINE, Cell, Published, multistep, publish, sgd, fp32
from scripts.experiments.repdistiller import rd_name, teacher_lines

ND = "WangYZ1608/Knowledge-Distillation-via-ND"
ND_README = f"{ND} README.md"
ND_SH = "CIFAR/train_cifar.sh"
# README.md table 1.1: (teacher, student) -> teacher accuracy, KD++, DKD++.
ND_RESULTS = {("resnet56", "resnet20"): (72.34, 72.53, 72.16), ("wrn_40_2", "wrn_40_1"): (75.61, 74.59, 75.02),
              ("resnet32x4", "resnet8x4"): (79.42, 75.54, 76.28),
              ("resnet50_cifar", "mobilenetv2"): (79.34, 70.10, 70.82),
              ("resnet32x4", "shufflenetv1"): (79.42, 75.45, 77.11),
              ("resnet32x4", "shufflenetv2"): (79.42, 76.42, 77.49)}
# CIFAR/train_cifar.sh, its comment table: KD++ (kd, nd) and DKD++ (tckd, nckd, nd) weights per pair; cls 1.0 always.
ND_KDPP = {("resnet56", "resnet20"): (1.0, 2.0), ("resnet32x4", "resnet8x4"): (3.5, 2.0),
           ("wrn_40_2", "wrn_40_1"): (1.0, 1.5), ("resnet50_cifar", "mobilenetv2"): (3.0, 0.5),
           ("resnet32x4", "shufflenetv1"): (2.5, 1.5), ("resnet32x4", "shufflenetv2"): (4.0, 0.5)}
ND_DKDPP = {("resnet56", "resnet20"): (2.5, 4.0, 3.5), ("resnet32x4", "resnet8x4"): (2.0, 8.0, 0.5),
            ("wrn_40_2", "wrn_40_1"): (1.0, 6.0, 1.0), ("resnet50_cifar", "mobilenetv2"): (0.5, 8.0, 1.0),
            ("resnet32x4", "shufflenetv1"): (0.5, 8.0, 4.0), ("resnet32x4", "shufflenetv2"): (0.5, 6.0, 0.5)}
# The README's commands: --lr 0.1 for ResNet/WRN students (KD++ res56 -> res20; ReviewKD++ wrn40_1), 0.02 for ShuffleNet
# students (DKD++ res32x4 -> ShuffleV1; DIST++ res32x4 -> ShuffleV2). MobileNetV2 is taken with the light students.
LIGHT_STUDENTS = ("mobilenetv2", "shufflenetv1", "shufflenetv2")


def cell_for(method: str, teacher: str, student: str) -> Cell:
    t_acc, kdpp, dkdpp = ND_RESULTS[teacher, student]
    published = kdpp if method == "kdpp" else dkdpp
    script = "CIFAR/train_cifar_kd.py" if method == "kdpp" else "CIFAR/train_cifar_dkd.py"
    title = "KD++" if method == "kdpp" else "DKD++"
    name = f"kdpp/{method}_{teacher}_{student}"
    light = student in LIGHT_STUDENTS
    lr = 0.02 if light else 0.1
    if method == "kdpp":
        kd, nd = ND_KDPP[teacher, student]
        weights = f"cls 1.0 + {kd:g} kd + {nd:g} nd"
    else:
        tckd, nckd, nd = ND_DKDPP[teacher, student]
        weights = f"cls 1.0 + {tckd:g} tckd + {nckd:g} nckd + {nd:g} nd"
    header = [
        f"{ND} (Wang et al., ICCV 2023, \"Improving Knowledge Distillation via Regularizing Feature Norm and",
        f"Direction\"), CIFAR-100, {title} {rd_name(teacher)} -> {rd_name(student)}. Published ({ND_README}, table",
        f"1.1; the README gives neither the epoch nor the number of runs): {title} {published:.2f}; teacher {t_acc:.2f}.",
        f"Recipe ({script}, README.md commands): 240 epochs, SGD with Nesterov momentum 0.9, weight decay 5e-4,",
        "batch 128 (--batch_size 64 per GPU times its default 2 GPUs in one DataParallel process: BatchNorm sees 64",
        "examples per replica, here 128), x0.1 at epochs 150/180/210, lr 0.1 (0.02 for ShuffleNet students in the",
        f"README; MobileNetV2 taken with them); loss weights ({ND_SH}): {weights}; T 4; the KD or DKD term ramped by",
        "min(1, epoch / 20) from epoch 0; class centres: the teacher's per-class mean embedding on the training set",
        "(CIFAR/emb_fea_distribution.py); a student embedding narrower or wider than the teacher's goes through",
        "BatchNorm1d -> Dropout 0.5 -> Linear (CIFAR/Models/embtrans_cifar.py).",
        FP32_LINE, *teacher_lines(teacher)[:3],
        f"  teacher.checkpoint=PATH (the anchor distils from mdistiller's cifar_teachers.tar, RepDistiller's teachers)",
        f"  python distill_train.py experiment={name} trainer=gpu",
    ]
    cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", method),
                               ("optimizer", "sgd"), ("scheduler", "multistep")])
    source = f"{script} (README.md command)"
    cell.set("baseline", False)
    cell.set("data.batch_size", 128, "--batch_size 64 x len(--gpus [0, 1]) in one DataParallel process")
    cell.set("data.val_size", 0, "the anchor evaluates on the test set every epoch and keeps no validation split")
    cell.set("trainer.max_epochs", 240, source)
    fp32(cell)
    sgd(cell, lr, 5.0e-4, source, f"README.md commands: --lr {lr:g}" + (" (light students)" if light else ""),
        nesterov=True)
    multistep(cell, [150, 180, 210], 0.1, f"{script}: lr x0.1 when epoch (from 0) is 150, 180, 210")
    cell.set("teacher.recipe.optimizer.lr", 0.05, "RepDistiller train_teacher.py (the anchor uses RepDistiller's teachers)")
    cell.set("teacher.recipe.optimizer.nesterov", False, "RepDistiller train_teacher.py")
    cell.set("teacher.recipe.data.batch_size", 64, "RepDistiller train_teacher.py")
    cell.set("teacher.recipe.seed", 0, "one teacher for every student seed")
    cell.set("kd.terms.ce.weight", 1.0, f"{ND_SH}: 1.0*cls")
    if method == "kdpp":
        cell.set("kd.terms.kd.weight", kd, f"{ND_SH}: --kd_loss_factor")
        cell.set("kd.terms.kd.temperature", 4.0, f"{script} --t default")
        cell.set("kd.terms.kd.warmup_epochs", 20, f"{script} --warm_up default")
    else:
        cell.set("kd.terms.dkd.weight", 1.0, "the DKD term's own weights carry alpha and beta")
        cell.set("kd.terms.dkd.weight_tckd", tckd, f"{ND_SH}: --dkd_alpha")
        cell.set("kd.terms.dkd.weight_nckd", nckd, f"{ND_SH}: --dkd_beta")
        cell.set("kd.terms.dkd.temperature", 4.0, f"{script} --t default")
        cell.set("kd.terms.dkd.warmup_epochs", 20, f"{script} --warm_up default")
    cell.set("kd.terms.nd.weight", nd, f"{ND_SH}: --nd_loss_factor")
    cell.set("kd.terms.nd.centres", "class_mean", "CIFAR/ckpt/teacher/*/center_emb_train.json")
    publish(cell, Published(published, f"{ND_README}, table 1.1 (CIFAR-100)", teacher=t_acc))
    return cell


def build() -> list[Cell]:
    return [cell_for(method, teacher, student) for method in ("kdpp", "dkdpp") for teacher, student in ND_RESULTS]
