"""yzd-v/cls_KD (Yang et al., ICCV 2023, "From Knowledge Distillation to Self-Knowledge Distillation: A Unified
Approach with Normalized Loss and Customized Soft Labels"): the NKD rows of nkd.md for the convolutional ImageNet
pairs, whose configs give the recipe (configs/distillers/imagenet/*.py on mmcls 1.0's ImageNet schedule)."""
from __future__ import annotations

from scripts.experiments.cells import Cell, Published, multistep, publish, sgd
from scripts.experiments.imagenet import TITLES, TV_WEIGHTS, imagenet_common, imagenet_defaults, imagenet_header

CLS = "yzd-v/cls_KD"
NKD_MD = f"{CLS} nkd.md"
# nkd.md "NKD" table: (teacher, student) -> config, the published top-1, mmcls's own teacher top-1 (the config's
# teacher_pretrained weights), gradient clipping (the config's optim_wrapper clip_grad max_norm, or None).
NKD_IMAGENET = {("resnet34", "resnet18"): ("res34_distill_res18_img.py", 71.96, 73.62, None),
                ("resnet50", "mobilenetv1"): ("res50_distill_mv1_img.py", 72.58, 76.55, 5.0)}
SCHEDULE = "configs/_base_/schedules/imagenet_bs256.py"


def imagenet_cell(teacher: str, student: str) -> Cell:
    config, published, mmcls_teacher, clip = NKD_IMAGENET[teacher, student]
    source = f"{CLS} configs/distillers/imagenet/{config}"
    name = f"clskd/nkd_{teacher}_{student}"
    header = imagenet_header([
        f"{CLS} (Yang et al., ICCV 2023), ImageNet (ILSVRC-2012), NKD {TITLES[teacher]} -> {TITLES[student]}.",
        f"Published ({NKD_MD}, NKD table; the README gives neither the epoch nor the number of runs): {published:.2f}.",
        f"Recipe ({source} on mmcls 1.0's {SCHEDULE} and datasets/imagenet_bs32.py; tools/dist_train.sh with 8 GPUs):",
        "100 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, 8 processes x batch 32 (256), x0.1 at 30/60/90;",
        "CE 1 + NKD 1 with temp 1, gamma 1.5; RandomResizedCrop 224 and flips." +
        (f" Gradients clipped to norm {clip:g}." if clip else ""),
        f"Teacher: the anchor loads mmcls's pretrained {TITLES[teacher]} (top-1 {mmcls_teacher:.2f} per mmcls); this cell",
        "reads torchvision's (below), whose keys this project loads.",
        *(["Student: mdistiller's MobileNet-V1 (models/imagenet/mobilenetv1.py; model=mobilenetv1) in place of cls_KD's",
           "mmcls MobileNet-V1."] if student == "mobilenetv1" else []),
    ], teacher, name, launch=" trainer=gpu trainer.devices=8")
    cell = Cell(name, header, imagenet_defaults(student, [("kd", "nkd"), ("optimizer", "sgd"),
                                                          ("scheduler", "multistep")]))
    imagenet_common(cell, teacher, student, source)
    cell.set("data.batch_size", 32, "datasets/imagenet_bs32.py train_dataloader batch_size (per process)")
    cell.set("trainer.devices", 8, "nkd.md: bash tools/dist_train.sh CONFIG 8")
    cell.set("trainer.strategy", "ddp", "tools/dist_train.sh: one process per GPU")
    cell.set("trainer.sync_batchnorm", False, "mmcls's ResNet/MobileNet configs use plain BatchNorm")
    cell.set("trainer.max_epochs", 100, SCHEDULE)
    if clip:
        cell.set("trainer.gradient_clip_val", clip, f"{source} optim_wrapper clip_grad max_norm")
    sgd(cell, 0.1, 1.0e-4, SCHEDULE)
    multistep(cell, [30, 60, 90], 0.1, SCHEDULE)
    cell.set_rows("kd.terms", [("ce.weight", 1.0, "the student head's CrossEntropyLoss loss_weight 1.0"),
                               ("nkd.weight", 1.0, "distiller.py adds loss_nkd unweighted"),
                               ("nkd.temperature", 1.0, f"{source} NKDLoss temp"),
                               ("nkd.weight_non_target", 1.5, f"{source} NKDLoss gamma")])
    weights, _, _ = TV_WEIGHTS[teacher]
    publish(cell, Published(published, f"{NKD_MD}, NKD table", teacher=mmcls_teacher,
                            teacher_note=f"mmcls's pretrained {TITLES[teacher]}; this cell reads torchvision's {weights}"))
    return cell


def build() -> list[Cell]:
    return [imagenet_cell(teacher, student) for teacher, student in NKD_IMAGENET]
