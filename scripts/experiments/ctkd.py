"""CTKD (zhengli97/CTKD; Li et al., AAAI 2023, "Curriculum Temperature for Knowledge Distillation"): its README's
CIFAR-100 table (+CTKD on vanilla KD, RepDistiller's teachers and recipe) and its ImageNet KD+CTKD cell.
Not here: the README's ImageNet DKD+CTKD (71.51), which needs DKD with the learned temperature."""
from __future__ import annotations

from scripts.experiments.cells import Cell, Published, multistep, publish, sgd
from scripts.experiments.imagenet import TITLES, TV_WEIGHTS, imagenet_common, imagenet_defaults, imagenet_header
from scripts.experiments.lskd import CTKD_TERM, TEACHER_ACC, ctkd_terms
from scripts.experiments.repdistiller import RD_README, cifar100_recipe, rd_name, teacher_lines

CTKD = "zhengli97/CTKD"
CTKD_README = f"{CTKD} README.md"
# README "Main Results" on CIFAR-100: (teacher, student) -> +CTKD
CTKD_CIFAR = {("resnet56", "resnet20"): 71.19, ("resnet110", "resnet32"): 73.52, ("resnet110", "resnet20"): 70.99,
              ("wrn_40_2", "wrn_16_2"): 75.45, ("wrn_40_2", "wrn_40_1"): 73.93, ("vgg13", "vgg8"): 73.52}
# README ImageNet table: teacher ResNet-34 73.96, student ResNet-18 70.26, KD 70.83, +CTKD 71.32.
CTKD_IMAGENET = {"published": 71.32, "teacher": 73.96, "kd": 70.83}
IMAGENET_SCRIPT = f"{CTKD} scripts/run_imagenet_distill.sh"


def cifar_cell(teacher: str, student: str, published: float) -> Cell:
    name = f"ctkd/ctkd_{teacher}_{student}"
    source = f"{CTKD} scripts/run_cifar_distill.sh, train_student.py"
    cell = Cell(name, [
        f"CTKD (Li et al., AAAI 2023; {CTKD}), CIFAR-100, KD+CTKD {rd_name(teacher)} -> {rd_name(student)}.",
        f"Published ({CTKD_README}, CIFAR-100 table): {published:.2f} (the best epoch: train_student.py reports",
        "best_acc). Recipe (scripts/run_cifar_distill.sh `--distill kd -r 0.1 -a 0.9 --have_mlp 1 --mlp_name global",
        "--cosine_decay 1 --decay_max 0 --decay_min -1 --decay_loops 10`, train_student.py defaults): 240 epochs, SGD",
        "momentum 0.9, weight decay 5e-4, batch 64, lr 0.05 (0.01 for MobileNetV2/ShuffleNet), x0.1 at 150/180/210;",
        "CE 0.1 + KD 0.9 at the learned global temperature 1 + 20 sigmoid(raw), trained through a gradient reversal",
        "whose lambda goes from 0 to -1 over the first 10 epochs (cosine); the temperature learns in the student's SGD.",
        *teacher_lines(teacher), f"  python distill_train.py experiment={name} trainer=gpu",
    ], [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", "ctkd"), ("optimizer", "sgd"),
        ("scheduler", "multistep")])
    cifar100_recipe(cell, source, student, "RepDistiller train_teacher.py: lr 0.05 (CTKD distils from its teachers)")
    ctkd_terms(cell, 0.9, "-a 0.9", False)
    publish(cell, Published(published, f"{CTKD_README}, CIFAR-100 table, row +CTKD", teacher=TEACHER_ACC[teacher],
                            epoch="best", teacher_note=f"{RD_README}: CTKD distils from RepDistiller's teachers"))
    return cell


def imagenet_cell() -> Cell:
    teacher, student = "resnet34", "resnet18"
    name = f"ctkd/ctkd_{teacher}_{student}"
    cell = Cell(name, imagenet_header([
        f"CTKD (Li et al., AAAI 2023; {CTKD}), ImageNet (ILSVRC-2012), KD+CTKD {TITLES[teacher]} -> {TITLES[student]}.",
        f"Published ({CTKD_README}, ImageNet table): {CTKD_IMAGENET['published']:.2f} (KD {CTKD_IMAGENET['kd']:.2f};",
        f"their teacher {CTKD_IMAGENET['teacher']:.2f}; the best epoch). Recipe ({IMAGENET_SCRIPT}): 120 epochs, SGD",
        "lr 0.1 momentum 0.9 weight decay 1e-4, x0.1 at 30/60/90, batch 256 over 8 processes (32 each, DDP without",
        "synchronised BatchNorm: train_student.py divides --batch_size by the GPUs); CE 1 + KD 1 (-r 1 -a 1) at the",
        "learned global temperature 1 + 20 sigmoid(raw) (--t_start 1 --t_end 20), lambda 0 -> -1 over 5 epochs",
        "(--decay_loops 5). On N GPUs keep the global batch: trainer.devices=N data.batch_size=256/N.",
    ], teacher, name), imagenet_defaults(student, [("kd", "ctkd"), ("optimizer", "sgd"), ("scheduler", "multistep")]))
    imagenet_common(cell, teacher, student, IMAGENET_SCRIPT)
    cell.set("trainer.devices", 8, f"{IMAGENET_SCRIPT} --gpu_id 0,1,2,3,4,5,6,7 --multiprocessing-distributed")
    cell.set("trainer.strategy", "ddp", "train_student.py: DistributedDataParallel, one process per GPU")
    cell.set("trainer.sync_batchnorm", False, "train_student.py wraps the models in DDP without SyncBatchNorm")
    cell.set("data.batch_size", 32, f"{IMAGENET_SCRIPT} --batch_size 256 / 8 processes (per process)")
    cell.set("trainer.max_epochs", 120, f"{IMAGENET_SCRIPT} --epochs 120")
    sgd(cell, 0.1, 1.0e-4, f"{IMAGENET_SCRIPT} --learning_rate 0.1 --weight_decay 1e-4 (momentum: default 0.9)")
    multistep(cell, [30, 60, 90], 0.1, f"{IMAGENET_SCRIPT} --lr_decay_epochs 30,60,90")
    cell.set_rows("kd.terms", [("ce.weight", 1.0, "-r 1"), ("kd.weight", 1.0, "-a 1"), *CTKD_TERM[:-1],
                               ("kd.lambda_epochs", 5, "--decay_loops 5"),
                               ("kd.standardize", False, "plain DistillKL")])
    weights, _, _ = TV_WEIGHTS[teacher]
    publish(cell, Published(CTKD_IMAGENET["published"], f"{CTKD_README}, ImageNet table, +CTKD (on KD)",
                            teacher=CTKD_IMAGENET["teacher"], epoch="best",
                            teacher_note=f"their ResNet-34 ({CTKD_README}); this cell's is torchvision's {weights}"))
    return cell


def build() -> list[Cell]:
    return [*(cifar_cell(teacher, student, value) for (teacher, student), value in CTKD_CIFAR.items()), imagenet_cell()]
