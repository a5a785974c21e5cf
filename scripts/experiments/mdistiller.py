"""mdistiller (megvii-research/mdistiller; Zhao et al., CVPR 2022, "Decoupled Knowledge Distillation"): its
CIFAR-100 DKD table (RepDistiller's recipe and teachers) and its ImageNet table (KD and DKD for ResNet-34 ->
ResNet-18 and ResNet-50 -> MobileNet-V1); and its DOT tables (Zhao et al., ICCV 2023, "DOT: A Distillation-Oriented
Trainer"): KD+DOT on CIFAR-100 and ImageNet (optimizer=dot). Its Tiny-ImageNet DOT cells are not here: the project
has no Tiny-ImageNet data module."""
from __future__ import annotations

from scripts.experiments.cells import Cell, Published, check_kd_defaults, multistep, publish, sgd
from scripts.experiments.imagenet import TITLES, TV_WEIGHTS, imagenet_common, imagenet_defaults, imagenet_header
from scripts.experiments.repdistiller import (RD_CROSS, RD_README, RD_SAME, cifar100_recipe, rd_name, released_teacher,
                                             teacher_lines)

MD = "mdistiller configs/cifar100/dkd/"
MD_README = "megvii-research/mdistiller README.md"
# (teacher, student) -> (config file, NCKD beta, published DKD accuracy, README KD accuracy)
MD_DKD = {
    ("resnet56", "resnet20"): ("res56_res20.yaml", 2.0, 71.97, 70.66),
    ("resnet110", "resnet32"): ("res110_res32.yaml", 2.0, 74.11, 73.08),
    ("resnet32x4", "resnet8x4"): ("res32x4_res8x4.yaml", 8.0, 76.32, 73.33),
    ("wrn_40_2", "wrn_16_2"): ("wrn40_2_wrn_16_2.yaml", 6.0, 76.23, 74.92),
    ("wrn_40_2", "wrn_40_1"): ("wrn40_2_wrn_40_1.yaml", 6.0, 74.81, 73.54),
    ("vgg13", "vgg8"): ("vgg13_vgg8.yaml", 6.0, 74.68, 72.98),
    ("resnet32x4", "shufflenetv1"): ("res32x4_shuv1.yaml", 8.0, 76.45, 74.07),
    ("wrn_40_2", "shufflenetv1"): ("wrn40_2_shuv1.yaml", 8.0, 76.70, 74.83),
    ("vgg13", "mobilenetv2"): ("vgg13_mv2.yaml", 6.0, 69.71, 67.37),
    ("resnet50_cifar", "mobilenetv2"): ("res50_mv2.yaml", 8.0, 70.35, 67.35),
    # README labels it "ResNet32x4 -> MobileNet-V2", but its KD value is RepDistiller's res32x4 -> ShuffleV2 and
    # the repository ships configs/cifar100/dkd/res32x4_shuv2.yaml.
    ("resnet32x4", "shufflenetv2"): ("res32x4_shuv2.yaml", 8.0, 77.07, 74.45),
}
ENGINE_CFG = "mdistiller/engine/cfg.py"  # the defaults file, by its path in the repository
# Its defaults that cfg/kd/dkd.yaml must keep (the CIFAR cells rely on them).
MD_DKD_DEFAULTS = {"weight_tckd": 1.0, "temperature": 4.0, "warmup_epochs": 20}
# ImageNet (README table; best epoch, mean of 3 runs, issue #30): (teacher, student) -> config folder, the
# published KD and DKD accuracies, DKD's beta. Every config: 100 epochs, batch 512, SGD lr 0.2 momentum 0.9,
# weight decay 1e-4, x0.1 at 30/60/90; KD CE 0.5 + KD 0.5 at T 1; DKD CE 1, alpha 1, T 1, warm-up 1 epoch.
MD_IMAGENET = {("resnet34", "resnet18"): ("r34_r18", 71.03, 71.70, 0.5),
               ("resnet50", "mobilenetv1"): ("r50_mv1", 70.50, 72.05, 2.0)}


# DOT (README "DOT: A Distillation-Oriented Trainer" tables; configs/<data>/dot/*.yaml; trainer "dot"): (teacher,
# student) -> config file, the published KD and KD+DOT accuracies. CIFAR-100: mdistiller's KD
# (mdistiller/engine/cfg.py CE 0.1, KD 0.9, T 4), DOT.DELTA 0.075, the DKD cells' recipe; ImageNet: KD CE 0.5 + KD 0.5
# at T 1, DOT.DELTA 0.09.
MD_DOT_CIFAR = {("resnet32x4", "resnet8x4"): ("res32x4_res8x4.yaml", 73.33, 75.12),
                ("vgg13", "vgg8"): ("vgg13_vgg8.yaml", 72.98, 73.77),
                ("resnet32x4", "shufflenetv2"): ("res32x4_shuv2.yaml", 74.45, 75.55)}
MD_DOT_IMAGENET = {("resnet34", "resnet18"): ("r34_r18", 71.03, 71.72),
                   ("resnet50", "mobilenetv1"): ("r50_mv1", 70.50, 73.09)}
DOT_NOTE = ("mdistiller engine/trainer.py DOT: loss_kd backward first (retain_graph), then loss_ce; dot.py "
            "DistillationOrientedTrainer")


def dot_optimizer(cell: Cell, lr: float, weight_decay: float, delta: float, source: str) -> None:
    cell.set("optimizer.lr", lr, source)
    cell.set("optimizer.momentum", 0.9, f"{source} SOLVER.MOMENTUM (task momentum 0.9 - delta, KD 0.9 + delta)")
    cell.set("optimizer.delta", delta, f"{source} SOLVER.DOT.DELTA")
    cell.set("optimizer.weight_decay", weight_decay, source)
    cell.set("optimizer.task_terms", ["ce"], f"{DOT_NOTE}: loss_ce is the task loss, loss_kd the distillation loss")


def dot_cifar_cell(teacher: str, student: str, file: str, kd: float, published: float) -> Cell:
    name, source = f"mdistiller/kd_dot_{teacher}_{student}", f"mdistiller configs/cifar100/dot/{file}"
    header = [
        f"mdistiller (Zhao et al., ICCV 2023, \"DOT: A Distillation-Oriented Trainer\"), CIFAR-100, KD+DOT",
        f"{rd_name(teacher)} -> {rd_name(student)}. Published (mdistiller README.md, DOT CIFAR-100 table): KD+DOT",
        f"{published:.2f} vs KD {kd:.2f} (RepDistiller's last-epoch number); mdistiller reports the best epoch (issue",
        f"#30). Recipe ({source}, mdistiller/engine/cfg.py, engine/trainer.py DOT): 240 epochs, batch 64, x0.1 at",
        "150/180/210, weight decay 5e-4, lr 0.05 (0.01 for ShuffleNet); KD CE 0.1 + KD 0.9 at T 4; optimizer=dot: the",
        "KD loss's gradient with momentum 0.9 + 0.075, the CE loss's with 0.9 - 0.075. Report the best epoch:",
        "scripts/make_table.py --epoch best. A teacher trained here takes the same optimizer block: DOT on CE alone is",
        "SGD with momentum 0.9 (RepDistiller's teacher recipe), in a run folder of its own.",
        *teacher_lines(teacher)[:1],
        "recipe at lr 0.05) once for every student seed; mdistiller uses RepDistiller's released teachers:",
        released_teacher(teacher),
        f"  python distill_train.py experiment={name} trainer=gpu",
    ]
    cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", "kd"),
                               ("optimizer", "dot"), ("scheduler", "multistep")])
    cifar100_recipe(cell, source, student, "RepDistiller train_teacher.py: lr 0.05 (mdistiller reuses its teachers)")
    del cell.body["optimizer"]["nesterov"]  # cfg/optimizer/dot.yaml has none (mdistiller's DOT has no Nesterov)
    dot_optimizer(cell, cell.body["optimizer"]["lr"].value, 5.0e-4, 0.075, source)
    cell.set("kd.name", "kd_dot", "KD trained with DOT: its own row in tables")
    cell.set_rows("kd.terms", [("ce.weight", 0.1, "mdistiller/engine/cfg.py KD.LOSS.CE_WEIGHT"),
                               ("kd.weight", 0.9, "mdistiller/engine/cfg.py KD.LOSS.KD_WEIGHT"),
                               ("kd.temperature", 4.0, "mdistiller/engine/cfg.py KD.TEMPERATURE")])
    teacher_acc = {**RD_SAME, **RD_CROSS}[teacher, student][0]
    publish(cell, Published(published, f"{MD_README}, DOT CIFAR-100 table, row KD+DOT", teacher=teacher_acc,
                            epoch="best", teacher_note=f"{RD_README}: mdistiller distils from RepDistiller's teachers"))
    return cell


def dot_imagenet_cell(teacher: str, student: str) -> Cell:
    folder, kd_acc, published = MD_DOT_IMAGENET[teacher, student]
    name, source = f"mdistiller/kd_dot_{teacher}_{student}", f"mdistiller configs/imagenet/{folder}/dot.yaml"
    header = imagenet_header([
        f"mdistiller (Zhao et al., ICCV 2023, \"DOT: A Distillation-Oriented Trainer\"), ImageNet (ILSVRC-2012), KD+DOT",
        f"{TITLES[teacher]} -> {TITLES[student]}. Published (mdistiller README.md, DOT ImageNet table): KD+DOT",
        f"{published:.2f} vs KD {kd_acc:.2f} (best epoch, mdistiller issue #30). Recipe ({source}): 100 epochs, SGD lr 0.2",
        "momentum 0.9 weight decay 1e-4, batch 512 (one process: tools/train.py wraps the model in DataParallel), x0.1",
        "at 30/60/90; KD CE 0.5 + KD 0.5 at T 1; optimizer=dot with DOT.DELTA 0.09. Report the best epoch.",
        *(["Student: mdistiller's MobileNet-V1 (models/imagenet/mobilenetv1.py; model=mobilenetv1)."]
          if student == "mobilenetv1" else []),
    ], teacher, name)
    cell = Cell(name, header, imagenet_defaults(student, [("kd", "kd"), ("optimizer", "dot"), ("scheduler", "multistep")]))
    imagenet_common(cell, teacher, student, source)
    cell.set("data.batch_size", 512, f"{source} SOLVER.BATCH_SIZE")
    cell.set("trainer.max_epochs", 100, source)
    dot_optimizer(cell, 0.2, 1.0e-4, 0.09, source)
    multistep(cell, [30, 60, 90], 0.1, source)
    cell.set("kd.name", "kd_dot", "KD trained with DOT: its own row in tables")
    cell.set_rows("kd.terms", [("ce.weight", 0.5, "KD.LOSS.CE_WEIGHT"), ("kd.weight", 0.5, "KD.LOSS.KD_WEIGHT"),
                               ("kd.temperature", 1.0, "KD.TEMPERATURE")])
    weights, _, teacher_acc = TV_WEIGHTS[teacher]
    publish(cell, Published(published, f"{MD_README}, DOT ImageNet table, row KD+DOT", teacher=round(teacher_acc, 2),
                            epoch="best",
                            teacher_note=f"torchvision's {weights} top-1 (mdistiller loads these pretrained weights)"))
    return cell


def dkd_terms(beta: tuple[float, str], temperature: tuple[float, str], warmup: tuple[int, str],
              ce_note: str) -> list[tuple[str, object, str]]:
    """The DKD objective as rows under kd.terms: CE 1, the DKD term at weight 1 carrying alpha (TCKD) and beta."""
    return [("ce.weight", 1.0, ce_note),
            ("dkd.weight", 1.0, "the DKD term's own weights below carry alpha and beta"),
            ("dkd.weight_tckd", 1.0, f"{ENGINE_CFG} DKD.ALPHA"),
            ("dkd.weight_nckd", *beta), ("dkd.temperature", *temperature), ("dkd.warmup_epochs", *warmup)]


def cifar_cell(teacher: str, student: str, file: str, beta: float, published: float, kd: float) -> Cell:
    name = f"mdistiller/dkd_{teacher}_{student}"
    header = [
        f"mdistiller (Zhao et al., CVPR 2022, \"Decoupled Knowledge Distillation\"), CIFAR-100, DKD {rd_name(teacher)} ->",
        f"{rd_name(student)}. Published (mdistiller README.md): DKD {published:.2f} (best epoch, mean of 5 runs, mdistiller",
        f"issue #30) vs KD {kd:.2f} (RepDistiller's last-epoch number). Recipe ({MD}{file},",
        f"{ENGINE_CFG}): 240 epochs, SGD momentum 0.9, weight decay 5e-4, batch 64, x0.1 at 150/180/210,",
        "lr 0.05 (0.01 for MobileNetV2/ShuffleNet students); CE 1, TCKD (alpha) 1, NCKD (beta) per pair, T 4,",
        "linear warm-up over 20 epochs. Report the best epoch: scripts/make_table.py --epoch best.",
        *teacher_lines(teacher)[:1],
        "recipe at lr 0.05) once for every student seed; mdistiller uses RepDistiller's released teachers:",
        released_teacher(teacher),
        f"  python distill_train.py experiment={name} trainer=gpu",
    ]
    cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", "dkd"),
                               ("optimizer", "sgd"), ("scheduler", "multistep")])
    cifar100_recipe(cell, MD + file, student, "RepDistiller train_teacher.py: lr 0.05 (mdistiller reuses its teachers)")
    beta_note = f"{file} DKD.BETA" if beta != 8.0 else f"{ENGINE_CFG} DKD.BETA (the config file keeps the default)"
    cell.set_rows("kd.terms", dkd_terms((beta, beta_note), (4.0, f"{ENGINE_CFG} DKD.T"),
                                        (20, f"{ENGINE_CFG} DKD.WARMUP"), f"{ENGINE_CFG} DKD.CE_WEIGHT"))
    teacher_acc = {**RD_SAME, **RD_CROSS}[teacher, student][0]
    publish(cell, Published(published, f"{MD_README}, CIFAR-100 DKD table (mean of 5 runs)", teacher=teacher_acc,
                            epoch="best", teacher_note=f"{RD_README}: mdistiller distils from RepDistiller's teachers"))
    return cell


def imagenet_cell(method: str, teacher: str, student: str) -> Cell:
    folder, kd_acc, dkd_acc, beta = MD_IMAGENET[teacher, student]
    name, source = f"mdistiller/{method}_{teacher}_{student}", f"mdistiller configs/imagenet/{folder}/{method}.yaml"
    pair = f"{TITLES[teacher]} -> {TITLES[student]}"
    loss = ("CE 0.5 + KD 0.5 (KD.LOSS), T 1 (KD.TEMPERATURE)" if method == "kd" else
            f"CE 1, TCKD (alpha) 1, NCKD (beta) {beta:g}, T 1, warm-up 1 epoch")
    header = imagenet_header([
        f"mdistiller (Zhao et al., CVPR 2022), ImageNet (ILSVRC-2012), {method.upper()} {pair}. Published (mdistiller",
        f"README.md, ImageNet table): KD {kd_acc:.2f}, DKD {dkd_acc:.2f} (best epoch, mean of 3 runs, mdistiller issue #30).",
        f"Recipe ({source}): 100 epochs, SGD lr 0.2 momentum 0.9 weight decay 1e-4, batch 512 (one process:",
        f"tools/train.py wraps the model in DataParallel), x0.1 at 30/60/90; {loss}. Report the best epoch (--epoch best).",
        *(["Student: mdistiller's MobileNet-V1 (models/imagenet/mobilenetv1.py; model=mobilenetv1)."]
          if student == "mobilenetv1" else []),
    ], teacher, name)
    cell = Cell(name, header, imagenet_defaults(student, [("kd", method), ("optimizer", "sgd"),
                                                          ("scheduler", "multistep")]))
    imagenet_common(cell, teacher, student, source)
    cell.set("data.batch_size", 512, f"{source} SOLVER.BATCH_SIZE")
    cell.set("trainer.max_epochs", 100, source)
    sgd(cell, 0.2, 1.0e-4, source)
    multistep(cell, [30, 60, 90], 0.1, source)
    if method == "kd":
        cell.set_rows("kd.terms", [("ce.weight", 0.5, "KD.LOSS.CE_WEIGHT"), ("kd.weight", 0.5, "KD.LOSS.KD_WEIGHT"),
                                   ("kd.temperature", 1.0, "KD.TEMPERATURE")])
    else:
        cell.set_rows("kd.terms", dkd_terms((beta, "DKD.BETA"), (1.0, "DKD.T"), (1, "DKD.WARMUP"), "DKD.CE_WEIGHT"))
    weights, _, teacher_acc = TV_WEIGHTS[teacher]
    publish(cell, Published(kd_acc if method == "kd" else dkd_acc, f"{MD_README}, ImageNet table (mean of 3 runs)",
                            teacher=round(teacher_acc, 2), epoch="best",
                            teacher_note=f"torchvision's {weights} top-1 (mdistiller loads these pretrained weights)"))
    return cell


def build() -> list[Cell]:
    check_kd_defaults("dkd", "dkd", MD_DKD_DEFAULTS, f"mdistiller's {ENGINE_CFG}")
    return [*(cifar_cell(teacher, student, *row) for (teacher, student), row in MD_DKD.items()),
            *(imagenet_cell(method, teacher, student) for teacher, student in MD_IMAGENET for method in ("kd", "dkd")),
            *(dot_cifar_cell(teacher, student, *row) for (teacher, student), row in MD_DOT_CIFAR.items()),
            *(dot_imagenet_cell(teacher, student) for teacher, student in MD_DOT_IMAGENET)]
