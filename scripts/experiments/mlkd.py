"""MLKD (Jin et al., CVPR 2023; Jin-Ying/Multi-Level-Logit-Distillation) and MLKD with logit standardization (Sun et
al., CVPR 2024; sunshangquan/logit-standardization-KD): the MLKD and MLKD+Ours rows of the LSKD README's CIFAR-100
tables, one cell per published number (the MLKD README itself publishes none).

Recipes. MLKD: the MLKD anchor's configs/cifar100/ours/<pair>.yaml where it has the pair (its tools/train_ours.py
with mdistiller/engine/cfg.py's KD defaults: T 4, CE 0.1, KD 0.9); for the five pairs it lacks, whose MLKD numbers
the LSKD authors ran without publishing their settings, the LSKD repository's configs/cifar100/mlkd/<pair>.yaml
schedule with MLKD's own loss settings. MLKD+LS: the LSKD configs/cifar100/mlkd/<pair>.yaml with
`--logit-stand --base-temp 2 --kd-weight W`, W from the pair's log file name (logs/MLKD/mlkd,<t>,<s>,2,W.txt; the
README's command and tools/train.py's defaults, 2 and 9, where no log is linked). The log files confirm each LS
recipe's schedule (epochs, lr and its steps).
"""
from __future__ import annotations

from scripts.experiments.cells import Cell, Published, check_kd_defaults, multistep, publish, sgd
from scripts.experiments.repdistiller import RD_CROSS, RD_README, RD_SAME, cifar100_recipe, rd_name, teacher_lines

MLKD_REPO = "Jin-Ying/Multi-Level-Logit-Distillation"
LSKD_REPO = "sunshangquan/logit-standardization-KD"
LSKD_README = f"{LSKD_REPO} README.md"
# The LSKD README's two CIFAR-100 tables: (teacher, student) -> (MLKD, MLKD+Ours), and the log's --kd-weight
# (None: no log linked; the README command's 9).
LSKD_TABLE = {
    ("resnet32x4", "resnet8x4"): (77.08, 78.28, 9), ("vgg13", "vgg8"): (75.18, 75.22, 6),
    ("wrn_40_2", "wrn_40_1"): (75.35, 75.56, 9), ("wrn_40_2", "wrn_16_2"): (76.63, 76.95, 9),
    ("resnet56", "resnet20"): (72.19, 72.33, None), ("resnet110", "resnet32"): (74.11, 74.32, 9),
    ("resnet110", "resnet20"): (71.89, 72.27, 9),
    ("resnet32x4", "shufflenetv2"): (78.44, 78.76, 6), ("resnet32x4", "wrn_16_2"): (76.52, 77.53, 9),
    ("resnet32x4", "wrn_40_2"): (79.26, 79.66, 9), ("wrn_40_2", "resnet8x4"): (77.33, 77.68, 9),
    ("wrn_40_2", "mobilenetv2"): (70.78, 71.61, None), ("vgg13", "mobilenetv2"): (70.57, 70.94, 6),
    ("resnet50_cifar", "mobilenetv2"): (71.04, 71.19, 9),
}
# MLKD anchor configs/cifar100/ours/: (teacher, student) -> (file, epochs, lr); every one batch 64, SGD momentum
# 0.9, weight decay 5e-4, x0.1 at 150/180/210, no warm-up (KD_ours has none).
MLKD_CONFIGS = {
    ("resnet32x4", "resnet8x4"): ("res32x4_res8x4.yaml", 240, 0.025), ("vgg13", "vgg8"): ("vgg13_vgg8.yaml", 240, 0.025),
    ("wrn_40_2", "wrn_40_1"): ("wrn40_2_wrn_40_1.yaml", 240, 0.025),
    ("wrn_40_2", "wrn_16_2"): ("wrn40_2_wrn_16_2.yaml", 240, 0.025),
    ("resnet56", "resnet20"): ("res56_res20.yaml", 240, 0.025), ("resnet110", "resnet32"): ("res110_res32.yaml", 240, 0.025),
    ("resnet32x4", "shufflenetv2"): ("res32x4_shuv2.yaml", 960, 0.01),
    ("vgg13", "mobilenetv2"): ("vgg13_mv2.yaml", 480, 0.01), ("resnet50_cifar", "mobilenetv2"): ("res50_mv2.yaml", 480, 0.01),
}
# LSKD configs/cifar100/mlkd/: (teacher, student) -> (file, epochs, lr); the same batch, momentum, decay and steps.
LSKD_CONFIGS = {
    ("resnet32x4", "resnet8x4"): ("resnet32x4_resnet8x4.yaml", 480, 0.025), ("vgg13", "vgg8"): ("vgg13_vgg8.yaml", 480, 0.01),
    ("wrn_40_2", "wrn_40_1"): ("wrn_40_2_wrn_40_1.yaml", 480, 0.025),
    ("wrn_40_2", "wrn_16_2"): ("wrn_40_2_wrn_16_2.yaml", 480, 0.025),
    ("resnet56", "resnet20"): ("resnet56_resnet20.yaml", 480, 0.025),
    ("resnet110", "resnet32"): ("resnet110_resnet32.yaml", 480, 0.025),
    ("resnet110", "resnet20"): ("resnet110_resnet20.yaml", 480, 0.025),
    ("resnet32x4", "shufflenetv2"): ("resnet32x4_ShuffleV2.yaml", 960, 0.01),
    ("resnet32x4", "wrn_16_2"): ("resnet32x4_wrn_16_2.yaml", 480, 0.025),
    ("resnet32x4", "wrn_40_2"): ("resnet32x4_wrn_40_2.yaml", 480, 0.025),
    ("wrn_40_2", "resnet8x4"): ("wrn_40_2_resnet8x4.yaml", 480, 0.025),
    ("wrn_40_2", "mobilenetv2"): ("wrn_40_2_MobileNetV2.yaml", 480, 0.005),
    ("vgg13", "mobilenetv2"): ("vgg13_MobileNetV2.yaml", 480, 0.01),
    ("resnet50_cifar", "mobilenetv2"): ("ResNet50_MobileNetV2.yaml", 480, 0.01),
}
LEVELS = ("instance_level", "batch_level", "class_level")
MLKD_TEMPERATURES = [4.0, 3.0, 5.0, 2.0, 6.0]  # KD_ours: KD.TEMPERATURE (engine/cfg.py: 4), 3, 5, 2, 6
BASE_TEMPERATURE = 2.0  # tools/train.py --base-temp 2 replaces KD.TEMPERATURE
TEACHER_ACCURACY = {teacher: accuracy for (teacher, _), (accuracy, _) in {**RD_SAME, **RD_CROSS}.items()}


def recipe(cell: Cell, source: str, epochs: int, lr: float, student: str) -> None:
    cifar100_recipe(cell, source, student, "RepDistiller train_teacher.py: lr 0.05 (both anchors reuse its teachers)")
    cell.set("trainer.max_epochs", epochs, f"{source} SOLVER.EPOCHS")
    sgd(cell, lr, 5.0e-4, source, f"{source} SOLVER.LR")
    multistep(cell, [150, 180, 210], 0.1, f"{source} SOLVER.LR_DECAY_STAGES (counted from epoch 1: x0.1 after 150)")


def mlkd_cell(teacher: str, student: str) -> Cell:
    published, _, _ = LSKD_TABLE[teacher, student]
    name = f"mlkd/mlkd_{teacher}_{student}"
    if (teacher, student) in MLKD_CONFIGS:
        file, epochs, lr = MLKD_CONFIGS[teacher, student]
        source = f"{MLKD_REPO} configs/cifar100/ours/{file}"
        provenance = ["Recipe: the MLKD anchor's config for the pair (tools/train_ours.py, mdistiller/engine/cfg.py)."]
    else:
        file, epochs, lr = LSKD_CONFIGS[teacher, student]
        source = f"{LSKD_REPO} configs/cifar100/mlkd/{file}"
        provenance = ["The MLKD anchor has no config for this pair: the LSKD authors ran it without publishing its",
                      "settings, so the cell takes the LSKD repository's schedule for the pair with MLKD's own loss",
                      "settings (the LSKD cfg.py would otherwise give T 2 and weight 9: its LS defaults)."]
    header = [
        f"MLKD (Jin et al., CVPR 2023, \"Multi-Level Logit Distillation\"), CIFAR-100, {rd_name(teacher)} ->",
        f"{rd_name(student)}. Published ({LSKD_README}, MLKD row): {published:.2f} (best epoch).", *provenance,
        f"{epochs} epochs, batch 64, SGD lr {lr:g} momentum 0.9 weight decay 5e-4, x0.1 at 150/180/210, no warm-up;",
        "weak and strong (RandAugment) views; CE on both 0.1, each level 0.9, temperatures 4, 3, 5, 2, 6 (cfg/kd/mlkd).",
        *teacher_lines(teacher), f"  python distill_train.py experiment={name} trainer=gpu"]
    cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", "mlkd"),
                               ("optimizer", "sgd"), ("scheduler", "multistep")])
    recipe(cell, source, epochs, lr, student)
    cell.set("kd.terms.ce.weight", 0.1, "mdistiller/engine/cfg.py KD.LOSS.CE_WEIGHT")
    for level in LEVELS:
        cell.set(f"kd.terms.{level}.weight", 0.9, "mdistiller/engine/cfg.py KD.LOSS.KD_WEIGHT")
        cell.set(f"kd.terms.{level}.temperatures", MLKD_TEMPERATURES, "KD_ours.py: KD.TEMPERATURE (4), 3, 5, 2, 6")
    publish(cell, Published(published, f"{LSKD_README}, CIFAR-100 tables, MLKD row", teacher=TEACHER_ACCURACY[teacher],
                            epoch="best", teacher_note=f"{RD_README}: the anchors distil from RepDistiller's teachers"))
    return cell


def mlkd_ls_cell(teacher: str, student: str) -> Cell:
    _, published, logged_weight = LSKD_TABLE[teacher, student]
    weight = float(logged_weight or 9)
    file, epochs, lr = LSKD_CONFIGS[teacher, student]
    source = f"{LSKD_REPO} configs/cifar100/mlkd/{file}"
    name = f"mlkd/mlkd_ls_{teacher}_{student}"
    log = (f"its log logs/MLKD/ names --base-temp 2 --kd-weight {logged_weight}" if logged_weight else
           "no log is linked: the README command's --base-temp 2 --kd-weight 9")
    header = [
        f"MLKD with logit standardization (Sun et al., CVPR 2024), CIFAR-100, {rd_name(teacher)} -> {rd_name(student)}.",
        f"Published ({LSKD_README}, MLKD+Ours row): {published:.2f} (best epoch). Recipe: {source} with",
        f"`--logit-stand --base-temp 2 --kd-weight {weight:g}` ({log}): {epochs} epochs, batch 64, SGD lr {lr:g}",
        "momentum 0.9 weight decay 5e-4, x0.1 at 150/180/210; weak and strong views; CE on both 0.1 (cfg.py), each",
        f"level {weight:g}, temperatures 2, 3, 5, 2, 6, the instance level standardized (cfg/kd/mlkd_ls).",
        *teacher_lines(teacher), f"  python distill_train.py experiment={name} trainer=gpu"]
    cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher/model", teacher),
                               ("kd", "mlkd_ls"), ("optimizer", "sgd"), ("scheduler", "multistep")])
    recipe(cell, source, epochs, lr, student)
    cell.set("kd.terms.ce.weight", 0.1, "LSKD mdistiller/engine/cfg.py KD.LOSS.CE_WEIGHT")
    for level in LEVELS:
        cell.set(f"kd.terms.{level}.weight", weight, f"--kd-weight {weight:g} (KD.LOSS.KD_WEIGHT)")
        cell.set(f"kd.terms.{level}.temperatures", [BASE_TEMPERATURE, *MLKD_TEMPERATURES[1:]],
                 "MLKD.py: --base-temp 2 (KD.TEMPERATURE), 3, 5, 2, 6")
    cell.set("kd.terms.instance_level.standardize", True, "--logit-stand: MLKD.py's kd_loss(logit_stand=True)")
    publish(cell, Published(published, f"{LSKD_README}, CIFAR-100 tables, MLKD+Ours row",
                            teacher=TEACHER_ACCURACY[teacher], epoch="best",
                            teacher_note=f"{RD_README}: the anchors distil from RepDistiller's teachers"))
    return cell


def build() -> list[Cell]:
    check_kd_defaults("mlkd", "instance_level", {"masking": "anchor", "anchor_strong_sum": True, "standardize": False},
                      "KD_ours.py")
    check_kd_defaults("mlkd_ls", "instance_level", {"masking": "anchor", "standardize": True}, "LSKD MLKD.py")
    for method in ("mlkd", "mlkd_ls"):
        for level in ("batch_level", "class_level"):
            check_kd_defaults(method, level, {"masking": "anchor", "strong_view": False, "standardize": False},
                              "the anchors' MLKD")
    return [*(mlkd_cell(t, s) for t, s in LSKD_TABLE), *(mlkd_ls_cell(t, s) for t, s in LSKD_TABLE)]
