"""Logit standardization (sunshangquan/logit-standardization-KD; Sun et al., CVPR 2024, "Logit Standardization in
Knowledge Distillation"): its README's two CIFAR-100 tables, every row with and without standardization, one cell per
published number. The anchor is mdistiller with a `--logit-stand --base-temp T --kd-weight W` switch (tools/train.py)
for KD and DKD, and a CTKD fork (CTKD/) for CTKD; its logs (logs/<METHOD>/<method,teacher,student,T,W[,beta]>.txt)
name the base temperature, weight and DKD beta each published run used, which the LS cells take.

Rows are a table of row builders (ROWS): another method's pair of rows (e.g. MLKD and MLKD+LS) is one more entry of
ROWS with its published numbers and a builder of its cell.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from scripts.experiments.cells import Cell, Published, check_kd_defaults, publish
from scripts.experiments.mdistiller import MD_DKD, dkd_terms
from scripts.experiments.repdistiller import RD_CROSS, RD_README, RD_SAME, cifar100_recipe, rd_name, teacher_lines

LS = "sunshangquan/logit-standardization-KD"
LS_README = f"{LS} README.md"
CTKD_REPO = "zhengli97/CTKD"
# The README's columns: the identical-structure table, then the distinct-structure one.
LS_PAIRS = [("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"), ("wrn_40_2", "wrn_40_1"), ("wrn_40_2", "wrn_16_2"),
            ("resnet56", "resnet20"), ("resnet110", "resnet32"), ("resnet110", "resnet20"),
            ("resnet32x4", "shufflenetv2"), ("resnet32x4", "wrn_16_2"), ("resnet32x4", "wrn_40_2"),
            ("wrn_40_2", "resnet8x4"), ("wrn_40_2", "mobilenetv2"), ("vgg13", "mobilenetv2"),
            ("resnet50_cifar", "mobilenetv2")]
LS_RESULTS = {  # README rows, one accuracy per column of LS_PAIRS
    "kd": [73.33, 72.98, 73.54, 74.92, 70.66, 73.08, 70.67, 74.45, 74.90, 77.70, 73.97, 68.36, 67.37, 67.35],
    "kd_ls": [76.62, 74.36, 74.37, 76.11, 71.43, 74.17, 71.48, 75.56, 75.26, 77.92, 77.11, 69.23, 68.61, 69.02],
    "ctkd": [73.39, 73.52, 73.93, 75.45, 71.19, 73.52, 70.99, 75.37, 74.57, 77.66, 74.61, 68.34, 68.50, 68.67],
    "ctkd_ls": [76.67, 74.47, 74.58, 76.08, 71.34, 74.01, 71.39, 76.18, 75.16, 77.99, 77.03, 69.53, 68.98, 69.36],
    "dkd": [76.32, 74.68, 74.81, 76.24, 71.97, 74.11, 71.06, 77.07, 75.70, 78.46, 75.56, 69.28, 69.71, 70.35],
    "dkd_ls": [77.01, 74.81, 74.89, 76.39, 72.32, 74.29, 71.85, 77.37, 76.19, 78.95, 76.75, 70.01, 69.98, 70.45],
}
# logs/KD/kd,<teacher>,<student>,<base temperature>,<KD weight>.txt, one per README cell of KD+LS.
KD_LS_LOGS = {("vgg13", "vgg8"): (3.0, 9.0), ("resnet110", "resnet20"): (4.0, 12.0),
              ("resnet32x4", "wrn_16_2"): (3.0, 9.0), ("resnet32x4", "wrn_40_2"): (3.0, 9.0),
              ("wrn_40_2", "mobilenetv2"): (3.0, 9.0), ("vgg13", "mobilenetv2"): (3.0, 9.0),
              ("resnet50_cifar", "mobilenetv2"): (3.0, 1.0)}  # every other pair: 2, 9 (the README's command)
# logs/DKD/dkd,<teacher>,<student>,<base temperature>,<weight>[,<beta>].txt: alpha and beta are multiplied by the
# weight (tools/train.py); beta given on the command line (DKD.BETA) where the name has it, else the config's.
DKD_LS_LOGS = {("resnet32x4", "resnet8x4"): (2.0, 9.0, None), ("vgg13", "vgg8"): (2.0, 15.0, 2.0),
               ("wrn_40_2", "wrn_40_1"): (2.0, 12.0, 2.0), ("wrn_40_2", "wrn_16_2"): (2.0, 12.0, 2.0),
               ("resnet56", "resnet20"): (3.0, 18.0, 2.0), ("resnet110", "resnet32"): (2.0, 15.0, 2.0),
               ("resnet110", "resnet20"): (2.0, 15.0, 2.0), ("resnet32x4", "shufflenetv2"): (2.0, 9.0, None),
               ("resnet32x4", "wrn_16_2"): (2.0, 9.0, 2.0), ("resnet32x4", "wrn_40_2"): (2.0, 9.0, 8.0),
               ("wrn_40_2", "resnet8x4"): (2.0, 18.0, 2.0), ("wrn_40_2", "mobilenetv2"): (2.0, 15.0, 2.0),
               ("vgg13", "mobilenetv2"): (3.0, 9.0, 2.0), ("resnet50_cifar", "mobilenetv2"): (2.0, 15.0, 2.0)}
LOG_NAMES = {"resnet50_cifar": "ResNet50", "mobilenetv2": "MobileNetV2", "shufflenetv2": "ShuffleV2"}
TEACHER_ACC = {teacher: acc for (teacher, _), (acc, _) in {**RD_SAME, **RD_CROSS}.items()}
# CTKD's CIFAR recipe (zhengli97/CTKD scripts/run_cifar_distill.sh, train_student.py), the LSKD fork's the same
# with -a 9 and its logit-standardized KL (CTKD/train_student.py).
CTKD_TERM = [("kd._target_", "losses.ctkd.CTKDTerm", "distiller_zoo/KD.py DistillKL with models/temp_global.py Global_T"),
             ("kd.module", "global", "--have_mlp 1 --mlp_name global"),
             ("kd.temperature_start", 1.0, "train_student.py --t_start 1 (default)"),
             ("kd.temperature_range", 20.0, "train_student.py --t_end 20 (default)"),
             ("kd.lambda_max", 0.0, "--decay_max 0"), ("kd.lambda_min", -1.0, "--decay_min -1"),
             ("kd.lambda_epochs", 10, "--cosine_decay 1 --decay_loops 10")]


def log_name(model: str) -> str:
    return LOG_NAMES.get(model, model)


@dataclass(frozen=True)
class Row:
    title: str
    kd: str                                              # cfg/kd file the cell starts from
    epoch: str | None                                    # the epoch convention of the published number
    build: Callable[[Cell, str, str], str]               # sets the row's terms; returns the recipe line for the header
    recipe: str                                          # where the row's training recipe is written


def kd_row(cell: Cell, teacher: str, student: str) -> str:
    cell.set_rows("kd.terms", [("ce.weight", 0.1, "mdistiller/engine/cfg.py KD.LOSS.CE_WEIGHT (RepDistiller -r 0.1)"),
                               ("kd.weight", 0.9, "KD.LOSS.KD_WEIGHT (RepDistiller -a 0.9)"),
                               ("kd.temperature", 4.0, "KD.TEMPERATURE (RepDistiller --kd_T 4)")])
    return "CE 0.1 + KD 0.9 at T 4 (RepDistiller's and mdistiller's KD)"


def kd_ls_row(cell: Cell, teacher: str, student: str) -> str:
    temperature, weight = KD_LS_LOGS.get((teacher, student), (2.0, 9.0))
    log = f"logs/KD/kd,{log_name(teacher)},{log_name(student)},{temperature:g},{weight:g}.txt"
    cell.set_rows("kd.terms", [("ce.weight", 0.1, "mdistiller/engine/cfg.py KD.LOSS.CE_WEIGHT"),
                               ("kd.weight", weight, f"--kd-weight ({log})"),
                               ("kd.temperature", temperature, f"--base-temp ({log})"),
                               ("kd.standardize", True, "--logit-stand")])
    return (f"tools/train.py --logit-stand --base-temp {temperature:g} --kd-weight {weight:g} (the published run's "
            f"log, {log}): CE 0.1 + KD {weight:g} on z-scored logits at T {temperature:g}")


def ctkd_terms(cell: Cell, kd_weight: float, weight_note: str, standardize: bool) -> None:
    cell.set_rows("kd.terms", [("ce.weight", 0.1, "-r 0.1"), ("kd.weight", kd_weight, weight_note), *CTKD_TERM,
                               ("kd.standardize", standardize, "the LSKD fork's DistillKL_logit_stand" if standardize
                                else "plain DistillKL")])


def ctkd_row(cell: Cell, teacher: str, student: str) -> str:
    ctkd_terms(cell, 0.9, "-a 0.9", False)
    return (f"{CTKD_REPO} scripts/run_cifar_distill.sh: CE 0.1 + KD 0.9 with the learned global temperature "
            "1 + 20 sigmoid(raw) behind a gradient reversal, lambda 0 -> -1 over 10 epochs (cosine)")


def ctkd_ls_row(cell: Cell, teacher: str, student: str) -> str:
    ctkd_terms(cell, 9.0, "-a 9 (CTKD/scripts/run_cifar_distill.sh)", True)
    return ("CTKD/scripts/run_cifar_distill.sh of the LSKD repository: CE 0.1 + KD 9 on z-scored logits (its "
            "train_student.py picks DistillKL_logit_stand unless --logit_stand is given: the condition is inverted, so "
            "the script's run standardizes) with CTKD's learned temperature (--kd_T 2 is unused when the temperature "
            "is learned). Its logs (logs/CTKD/*.txt) print temperatures from about 30 down to 2.00, which the script's "
            "range (1, 21) cannot give: the logged runs used a range the repository does not record; the cell runs "
            "the script's")


def dkd_beta(teacher: str, student: str) -> tuple[float, str]:
    if (teacher, student) in MD_DKD:
        file, beta, *_ = MD_DKD[teacher, student]
        return beta, f"mdistiller configs/cifar100/dkd/{file} DKD.BETA"
    return 8.0, "mdistiller/engine/cfg.py DKD.BETA (mdistiller has no config for this pair)"


def dkd_row(cell: Cell, teacher: str, student: str) -> str:
    beta, note = dkd_beta(teacher, student)
    cell.set_rows("kd.terms", dkd_terms((beta, note), (4.0, "mdistiller/engine/cfg.py DKD.T"),
                                        (20, "mdistiller/engine/cfg.py DKD.WARMUP"),
                                        "mdistiller/engine/cfg.py DKD.CE_WEIGHT"))
    return f"mdistiller's DKD: CE 1, alpha 1, beta {beta:g}, T 4, warm-up 20 epochs"


def dkd_ls_row(cell: Cell, teacher: str, student: str) -> str:
    temperature, weight, beta = DKD_LS_LOGS[teacher, student]
    log = (f"logs/DKD/dkd,{log_name(teacher)},{log_name(student)},{temperature:g},{weight:g}"
           f"{'' if beta is None else f',{beta:.1f}'}.txt")
    if beta is None:  # the pair's config sets no DKD.BETA
        beta, beta_note = 8.0, "mdistiller/engine/cfg.py DKD.BETA (the log and the pair's config name none)"
    else:
        beta_note = f"DKD.BETA {beta:g} ({log})"
    cell.set_rows("kd.terms", [("ce.weight", 1.0, "mdistiller/engine/cfg.py DKD.CE_WEIGHT"),
                               ("dkd.weight", weight, f"--kd-weight {weight:g}, which multiplies alpha and beta ({log})"),
                               ("dkd.weight_tckd", 1.0, "mdistiller/engine/cfg.py DKD.ALPHA"), ("dkd.weight_nckd", beta, beta_note),
                               ("dkd.temperature", temperature, f"--base-temp ({log})"),
                               ("dkd.warmup_epochs", 20, "mdistiller/engine/cfg.py DKD.WARMUP"),
                               ("dkd.standardize", True, "--logit-stand")])
    return (f"tools/train.py --logit-stand --base-temp {temperature:g} --kd-weight {weight:g} (the published run's "
            f"log, {log}): CE 1, alpha {weight:g}, beta {weight:g} x {beta:g} on z-scored logits at T {temperature:g}, "
            "warm-up 20 epochs")


MD_RECIPE, CTKD_RECIPE = f"{LS} configs/cifar100/ (mdistiller's)", f"{CTKD_REPO} train_student.py"
ROWS = {"kd": Row("KD", "kd", None, kd_row, MD_RECIPE), "kd_ls": Row("KD+LS", "lskd", "best", kd_ls_row, MD_RECIPE),
        "ctkd": Row("CTKD", "ctkd", None, ctkd_row, CTKD_RECIPE),
        "ctkd_ls": Row("CTKD+LS", "ctkd", "best", ctkd_ls_row, f"{LS} CTKD/train_student.py"),
        "dkd": Row("DKD", "dkd", None, dkd_row, MD_RECIPE), "dkd_ls": Row("DKD+LS", "dkd", "best", dkd_ls_row, MD_RECIPE)}
# Where the rows without LS come from (the README copies them from other papers).
ROW_SOURCES = {"kd": "the KD row (RepDistiller's last-epoch numbers for its pairs)",
               "ctkd": "the CTKD row (the CTKD paper's numbers)", "dkd": "the DKD row (mdistiller's and later papers')"}


def cell_for(row_name: str, teacher: str, student: str, published: float) -> Cell:
    row = ROWS[row_name]
    name = f"lskd/{row_name}_{teacher}_{student}"
    same = LS_PAIRS.index((teacher, student)) < 7
    table = "identical-structure" if same else "distinct-structure"
    cell = Cell(name, [], [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", row.kd),
                           ("optimizer", "sgd"), ("scheduler", "multistep")])
    cifar100_recipe(cell, row.recipe, student, "RepDistiller train_teacher.py: lr 0.05 (the teachers are RepDistiller's)")
    recipe = row.build(cell, teacher, student)
    cell.set("kd.name", row_name, f"the README's {row.title} row, apart in tables")
    what = ROW_SOURCES.get(row_name, f"the {row.title} row, from the repository's own runs (logs/)")
    cell.header = [
        f"Logit standardization (Sun et al., CVPR 2024; {LS}), CIFAR-100, {row.title} {rd_name(teacher)} ->",
        f"{rd_name(student)}. Published ({LS_README}, {table} table, {what}): {published:.2f}",
        *(["(the best epoch: mdistiller's and CTKD's trainers report best_acc)."] if row.epoch == "best" else
          ["(the README gives no epoch convention for rows it copies)."]),
        f"Recipe: 240 epochs, SGD momentum 0.9, weight decay 5e-4, batch 64, x0.1 at 150/180/210, lr 0.05 (0.01 for",
        f"MobileNetV2/ShuffleNet students) ({row.recipe}); {recipe}.",
        *teacher_lines(teacher),
        f"  python distill_train.py experiment={name} trainer=gpu",
    ]
    publish(cell, Published(published, f"{LS_README}, {table} table, row {row.title}", teacher=TEACHER_ACC[teacher],
                            epoch=row.epoch, teacher_note=f"{RD_README}: the anchor distils from RepDistiller's teachers"))
    return cell


def build() -> list[Cell]:
    check_kd_defaults("lskd", "kd", {"standardize": True}, LS_README)
    return [cell_for(row, teacher, student, published)
            for row, results in LS_RESULTS.items()
            for (teacher, student), published in zip(LS_PAIRS, results)]
