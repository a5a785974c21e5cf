"""RepDistiller (HobbitLong/RepDistiller; Tian et al., ICLR 2020): its two CIFAR-100 tables, one cell per
published number. Also the CIFAR-100 recipe and teachers that mdistiller and CKD reuse."""
from __future__ import annotations

from scripts.experiments.cells import (FP32_LINE, Cell, Published, check_kd_defaults, check_phase_epochs, fp32, multistep,
                                      phases_with, pin_weights, publish, sgd)

RD_RECIPE = "RepDistiller train_student.py"
RD_README = "HobbitLong/RepDistiller README.md"
# README.md tables: (teacher, student) -> teacher / scratch-student accuracy, and each method's accuracy.
RD_SAME = {
    ("wrn_40_2", "wrn_16_2"): (75.61, 73.26), ("wrn_40_2", "wrn_40_1"): (75.61, 71.98),
    ("resnet56", "resnet20"): (72.34, 69.06), ("resnet110", "resnet20"): (74.31, 69.06),
    ("resnet110", "resnet32"): (74.31, 71.14), ("resnet32x4", "resnet8x4"): (79.42, 72.50),
    ("vgg13", "vgg8"): (74.64, 70.36)}
RD_CROSS = {
    ("vgg13", "mobilenetv2"): (74.64, 64.60), ("resnet50_cifar", "mobilenetv2"): (79.34, 64.60),
    ("resnet50_cifar", "vgg8"): (79.34, 70.36), ("resnet32x4", "shufflenetv1"): (79.42, 70.50),
    ("resnet32x4", "shufflenetv2"): (79.42, 71.82), ("wrn_40_2", "shufflenetv1"): (75.61, 70.50)}
RD_RESULTS = {  # method row -> one accuracy per column, in the order of RD_SAME then RD_CROSS; None: no cell
    "kd": [74.92, 73.54, 70.66, 70.67, 73.08, 73.33, 72.98, 67.37, 67.35, 73.81, 74.07, 74.45, 74.83],
    "fitnet": [73.58, 72.24, 69.21, 68.99, 71.06, 73.50, 71.02, 64.14, 63.16, 70.69, 73.59, 73.54, 73.73],
    "at": [74.08, 72.77, 70.55, 70.22, 72.31, 73.44, 71.43, 59.40, 58.58, 71.84, 71.73, 72.73, 73.32],
    "sp": [73.83, 72.43, 69.67, 70.04, 72.69, 72.94, 72.68, 66.30, 68.08, 73.34, 73.48, 74.56, 74.52],
    "cc": [73.56, 72.21, 69.63, 69.48, 71.48, 72.97, 70.71, 64.86, 65.43, 70.25, 71.14, 71.29, 71.38],
    "vid": [74.11, 73.30, 70.38, 70.16, 72.61, 73.09, 71.23, 65.56, 67.57, 70.30, 73.38, 73.40, 73.61],
    "rkd": [73.35, 72.22, 69.61, 69.25, 71.82, 71.90, 71.48, 64.52, 64.43, 71.50, 72.28, 73.21, 72.21],
    "pkt": [74.54, 73.45, 70.34, 70.25, 72.61, 73.64, 72.88, 67.13, 66.52, 73.01, 74.10, 74.69, 73.89],
    "ab": [72.50, 72.38, 69.47, 69.53, 70.98, 73.17, 70.94, 66.06, 67.20, 70.65, 73.55, 74.31, 73.34],
    "ft": [73.25, 71.59, 69.84, 70.22, 72.37, 72.86, 70.58, 61.78, 60.99, 70.29, 71.75, 72.50, 72.03],
    # N/A for wrn-40-2 -> wrn-40-1 (unequal widths); the cross-architecture table has no FSP row.
    "fsp": [72.91, None, 69.95, 70.11, 71.89, 72.62, 70.23, None, None, None, None, None, None],
    "nst": [73.68, 72.24, 69.60, 69.53, 71.96, 73.30, 71.53, 58.16, 64.96, 71.28, 74.12, 74.68, 74.89],
    "crd": [75.48, 74.14, 71.16, 71.46, 73.48, 75.51, 73.94, 69.73, 69.11, 74.30, 75.11, 75.65, 76.05],
    # Not in the README: the CRD paper's Tables 1 and 2 (row CRD+KD), run as README step 3 and
    # scripts/run_cifar_distill.sh "CRD+KD" say (CRD with a KD term, -a 1).
    "crd_kd": [75.64, 74.38, 71.63, 71.56, 73.75, 75.46, 74.29, 69.94, 69.54, 74.58, 75.12, 76.05, 76.27],
}
RD_SOURCES = {"crd_kd": "Tian et al., ICLR 2020 (the CRD paper), Table {number} ({table}), row CRD+KD"}
RD_KD_CONFIG = {"crd_kd": "crd"}  # cells whose cfg/kd method has another name (plus a KD term, below)
# scripts/run_cifar_distill.sh: the flags of each method's command (-r defaults to 1 in train_student.py).
RD_FLAGS = {"kd": "--distill kd -r 0.1 -a 0.9 -b 0", "fitnet": "--distill hint -a 0 -b 100",
            "at": "--distill attention -a 0 -b 1000", "sp": "--distill similarity -a 0 -b 3000",
            "cc": "--distill correlation -a 0 -b 0.02", "vid": "--distill vid -a 0 -b 1",
            "rkd": "--distill rkd -a 0 -b 1", "pkt": "--distill pkt -a 0 -b 30000",
            "ab": "--distill abound -a 0 -b 1", "ft": "--distill factor -a 0 -b 200",
            "fsp": "--distill fsp -a 0 -b 50", "nst": "--distill nst -a 0 -b 50",
            "crd": "--distill crd -a 0 -b 0.8", "crd_kd": "--distill crd -a 1 -b 0.8"}
# The published weight of each named term (CE is -r, the method term -b, KD -a). AB and FSP only pre-train
# (train_student.py runs their loss in `init` for --init_epochs, then CE alone), so their main-loop weight is 0.
RD_WEIGHTS = {"kd": {"ce": 0.1, "kd": 0.9}, "fitnet": {"ce": 1.0, "fitnet": 100.0}, "at": {"ce": 1.0, "at": 1000.0},
              "sp": {"ce": 1.0, "sp": 3000.0}, "cc": {"ce": 1.0, "cc": 0.02}, "vid": {"ce": 1.0, "vid": 1.0},
              "rkd": {"ce": 1.0, "rkd": 1.0}, "pkt": {"ce": 1.0, "pkt": 30000.0}, "ab": {"ce": 1.0, "ab": 0.0},
              "ft": {"ce": 1.0, "ft": 200.0}, "fsp": {"ce": 1.0, "fsp": 0.0}, "nst": {"ce": 1.0, "nst": 50.0},
              "crd": {"ce": 1.0, "crd": 0.8}, "crd_kd": {"ce": 1.0, "crd": 0.8}}
# -a: a KD term added to a method's own terms (train_student.py criterion_kd, T --kd_T 4).
RD_ADDED_KD = {"crd_kd": 1.0}
RD_TWO_STAGE = ("ab", "ft", "fsp")  # --init_epochs 30
# helper/pretrain.py: FT's pre-training runs a fresh SGD at lr 0.01 for these students, at the main lr for the
# others (AB and FSP always use the main lr).
FT_PRETRAIN_LR_001 = ("resnet8", "resnet14", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet8x4",
                      "resnet32x4", "wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2")
# train_student.py: CRD's flags, checked against cfg/kd/crd.yaml and pinned in the cells (key, value, flag).
RD_CRD = (("feat_dim", 128, "--feat_dim 128"), ("num_negatives", 16384, "--nce_k 16384"),
          ("temperature", 0.07, "--nce_t 0.07"), ("momentum", 0.5, "--nce_m 0.5"))
SMALL_LR_STUDENTS = ("mobilenetv2", "shufflenetv1", "shufflenetv2")  # train_student.py: lr 0.01 for these
# Folder names of RepDistiller's released teachers (scripts/fetch_pretrained_teachers.sh).
RD_TEACHER_FOLDER = {"wrn_40_2": "wrn_40_2_vanilla", "resnet56": "resnet56_vanilla", "resnet110": "resnet110_vanilla",
                     "resnet32x4": "resnet32x4_vanilla", "vgg13": "vgg13_vanilla", "resnet50_cifar": "ResNet50_vanilla"}
RD_NAMES = {"resnet50_cifar": "ResNet50", "mobilenetv2": "MobileNetV2 (mobile_half)", "shufflenetv1": "ShuffleV1",
            "shufflenetv2": "ShuffleV2"}
RD_METHOD_TITLE = {"kd": "KD", "fitnet": "FitNet", "at": "AT", "sp": "SP", "cc": "CC", "vid": "VID", "rkd": "RKD",
                   "pkt": "PKT", "ab": "AB", "ft": "FT", "fsp": "FSP", "nst": "NST", "crd": "CRD", "crd_kd": "CRD+KD"}


def rd_name(model: str) -> str:
    return RD_NAMES.get(model, model)


def cifar100_recipe(cell: Cell, source: str, student: str, teacher_lr_note: str) -> None:
    """RepDistiller's (and mdistiller's) CIFAR-100 recipe; teachers trained with the same one (lr 0.05)."""
    small = student in SMALL_LR_STUDENTS
    cell.set("baseline", False)
    cell.set("data.batch_size", 64, source)
    cell.set("data.val_size", 0, "RepDistiller and mdistiller keep no validation split: they evaluate on the test set every epoch")
    cell.set("trainer.max_epochs", 240, source)
    fp32(cell)
    sgd(cell, 0.01 if small else 0.05, 5.0e-4, source,
        f"{source}: 0.01 for MobileNetV2/ShuffleNet students" if small else source)
    multistep(cell, [150, 180, 210], 0.1, source)
    if small:
        cell.set("teacher.recipe.optimizer.lr", 0.05, teacher_lr_note)
    cell.set("teacher.recipe.seed", 0, "one teacher for every student seed, as RepDistiller distils every trial "
             "from one released checkpoint")


def released_teacher(teacher: str) -> str:
    return f"  teacher.checkpoint=save/models/{RD_TEACHER_FOLDER[teacher]}/ckpt_epoch_240.pth"


def teacher_lines(teacher: str) -> list[str]:
    return [f"Teacher: teacher.checkpoint=null trains {teacher} first (RepDistiller train_teacher.py: the same 240-epoch",
            "recipe at lr 0.05, on all 50k training images) once for every student seed; or use RepDistiller's released",
            "teacher (scripts/fetch_pretrained_teachers.sh; a {'model': state_dict} file, built as teacher/model):",
            released_teacher(teacher)]


def ft_pretrain_lr(student: str) -> tuple[float | None, str]:
    if student in FT_PRETRAIN_LR_001:
        return 0.01, "helper/pretrain.py: a fresh SGD at lr 0.01 for FT with ResNet/WRN students"
    return None, "helper/pretrain.py: a fresh SGD at the main lr (null) for this student"


def published_source(method: str, teacher: str, student: str) -> str:
    same = (teacher, student) in RD_SAME
    table = "same-architecture" if same else "cross-architecture"
    return RD_SOURCES.get(method, RD_README + ", {table} table").format(table=table, number=1 if same else 2)


def header(method: str, teacher: str, student: str, published: float) -> list[str]:
    t_acc, s_acc = {**RD_SAME, **RD_CROSS}[teacher, student]
    title = RD_METHOD_TITLE[method]
    source = published_source(method, teacher, student)
    lines = [
        f"RepDistiller (Tian et al., ICLR 2020, \"Contrastive Representation Distillation\"), CIFAR-100, {title}",
        f"{rd_name(teacher)} -> {rd_name(student)}. Published ({source}; the last epoch, RepDistiller issue #16):",
        f"{title} {published:.2f}; teacher {t_acc:.2f}, student from scratch {s_acc:.2f} (RepDistiller README.md).",
        f"Recipe (train_student.py, scripts/run_cifar_distill.sh `{RD_FLAGS[method]}`): 240 epochs, SGD momentum",
        "0.9, weight decay 5e-4, batch 64, x0.1 at epochs 150/180/210, lr 0.05 (0.01 for MobileNetV2/ShuffleNet).",
    ]
    if method in RD_ADDED_KD:
        lines.append(f"-a {RD_ADDED_KD[method]:g} adds a KD term (T 4) to the method's own; kd.name {method} keeps "
                     "its rows apart in tables.")
    if method in RD_TWO_STAGE:
        lines.append("Two-phase: the method's pre-training phase (cfg/kd) lasts 30 epochs (--init_epochs 30) before "
                     "the 240, with a fresh optimizer (helper/pretrain.py)")
        if method == "ft":
            lr, _ = ft_pretrain_lr(student)
            lines.append(f"at lr {lr:g} (FT with a ResNet/WRN student)." if lr else "at the main lr.")
        else:
            lines.append("at the main lr.")
    return [*lines, FP32_LINE, *teacher_lines(teacher),
            f"  python distill_train.py experiment=repdistiller/{method}_{teacher}_{student} trainer=gpu"]


def cell_for(method: str, teacher: str, student: str, published: float) -> Cell:
    kd = RD_KD_CONFIG.get(method, method)
    cell = Cell(f"repdistiller/{method}_{teacher}_{student}", header(method, teacher, student, published),
                [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", kd),
                 ("optimizer", "sgd"), ("scheduler", "multistep")])
    cifar100_recipe(cell, RD_RECIPE, student, "train_teacher.py: lr 0.05 (the 0.01 rule is for the student)")
    if kd != method:
        cell.set("kd.name", method, f"{RD_FLAGS[method]}: its own row in tables")
    pin_weights(cell, kd, RD_WEIGHTS[method], f"scripts/run_cifar_distill.sh ({RD_FLAGS[method]})")
    if method in RD_ADDED_KD:
        cell.set_rows("kd.terms.kd", [("_target_", "losses.KDTerm", "train_student.py criterion_kd (DistillKL)"),
                                      ("weight", RD_ADDED_KD[method], f"-a {RD_ADDED_KD[method]:g}"),
                                      ("temperature", 4.0, "train_student.py --kd_T 4")])
    if method == "kd":
        cell.set("kd.terms.kd.temperature", 4.0, "train_student.py --kd_T 4")
    if method in RD_TWO_STAGE:
        check_phase_epochs(method, 30, "RepDistiller (--init_epochs 30)")
    if method == "ft":
        lr, note = ft_pretrain_lr(student)
        cell.set("kd.phases", phases_with("ft", lr=lr), note)
    if kd == "crd":
        check_kd_defaults("crd", "crd", {key: value for key, value, _ in RD_CRD}, "RepDistiller train_student.py")
        cell.set_rows("kd.terms.crd", [(key, value, f"train_student.py {flag}") for key, value, flag in RD_CRD])
    t_acc = {**RD_SAME, **RD_CROSS}[teacher, student][0]
    publish(cell, Published(published, published_source(method, teacher, student), teacher=t_acc, epoch="last",
                            teacher_note="" if method not in RD_SOURCES else "RepDistiller README.md"))
    return cell


def build() -> list[Cell]:
    columns = [*RD_SAME, *RD_CROSS]
    return [cell_for(method, teacher, student, published)
            for method, results in RD_RESULTS.items()
            for (teacher, student), published in zip(columns, results) if published is not None]
