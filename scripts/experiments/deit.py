"""DeiT (Touvron et al., ICML 2021; facebookresearch/deit): its distilled ImageNet models, DeiT-Ti/S/B with a
distillation token, hard-distilled from a RegNetY-16GF teacher (README_deit.md, Model Zoo: the
deit_*_distilled_patch16_224 rows), one cell per student.

The recipe is DeiT's main.py defaults: 300 epochs, AdamW lr 5e-4 x batch / 512 (1e-3 at batch 1024), weight decay
0.05, cosine to 1e-5, label smoothing 0.1 under mixup 0.8, drop path 0.1, hard distillation at alpha 0.5 (`python
run_with_submitit.py --model deit_base_distilled_patch16_224 --distillation-type hard --teacher-model regnety_160
--teacher-path https://dl.fbaipublicfiles.com/deit/regnety_160-a5fe301d.pth`). What this framework does not run,
each named in the cells: RandAugment (rand-m9-mstd0.5-inc1), random erasing 0.25, repeated augmentation, the
5-epoch warm-up, DeiT's switch between mixup and cutmix 1.0 (mixup alone here), fp16 autocast (bf16 here), and
the model EMA (DeiT keeps one but evaluates the model itself)."""
from __future__ import annotations

from scripts.experiments.cells import Cell, Published, publish
from scripts.experiments.imagenet import hub_checkpoint

SOURCE = "facebookresearch/deit"
README = "facebookresearch/deit README_deit.md (Model Zoo)"
MAIN = "deit main.py"
TEACHER_FILE = "regnety_160-a5fe301d.pth"  # DeiT's --teacher-path, cached by torch.hub where DeiT's main.py puts it
TEACHER_TOP1 = 82.9  # RegNetY-16GF, DeiT paper Table 2 (the teacher of every distilled DeiT)
# (size word, timm model, published top-1 of the released distilled model)
STUDENTS = (("tiny", "deit_tiny_distilled_patch16_224", 74.5),
            ("small", "deit_small_distilled_patch16_224", 81.2),
            ("base", "deit_base_distilled_patch16_224", 83.4))
GLOBAL_BATCH = 1024  # 16 GPUs x 64 (run_with_submitit.py: 2 nodes x 8 GPUs, --batch-size 64)
DEVICES = 8
NOT_RUN = ("Not run here (DeiT's recipe has them): RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, repeated "
           "augmentation, the 5-epoch warm-up from 1e-6, cutmix 1.0 switched with mixup (mixup 0.8 alone here), the "
           "model EMA (DeiT evaluates the model itself), fp16 autocast (bf16-mixed here); expect the top-1 below the "
           "published one by what those add.")


def cell_for(size: str, model: str, published: float) -> Cell:
    name = f"deit/deit_hard_regnety_160_deit_{size}"
    header = [f"DeiT (Touvron et al. 2021), ImageNet (ILSVRC-2012): DeiT-{size[0].upper()}{size[1:]} with a "
              f"distillation token, hard-distilled from RegNetY-16GF. Published ({README}): {published}. Recipe "
              f"({MAIN} defaults): 300 epochs, AdamW lr 5e-4 x {GLOBAL_BATCH}/512, weight decay 0.05, cosine to 1e-5, "
              f"batch {GLOBAL_BATCH} ({DEVICES} GPUs x {GLOBAL_BATCH // DEVICES} here: on N GPUs keep the global batch "
              f"with trainer.devices=N data.batch_size={GLOBAL_BATCH}/N), label smoothing 0.1, mixup 0.8, drop path "
              f"0.1; DeiT's hard distillation (losses.py): CE of the class head 0.5 + CE of the distillation head on "
              f"the teacher's argmax 0.5, the two heads averaged at test time.", NOT_RUN,
              f"Teacher: DeiT's RegNetY-16GF weights (timm regnety_160, top-1 {TEACHER_TOP1} per the DeiT paper), read "
              f"as a state dict from the torch hub cache; offline, download "
              f"https://dl.fbaipublicfiles.com/deit/{TEACHER_FILE} into $TORCH_HOME/hub/checkpoints/ (default "
              f"~/.cache/torch/hub/checkpoints/), or pass teacher.checkpoint=PATH. Needs timm (pip install timm). "
              f"ImageNet: data.root=PATH (train/ and val/ class folders).",
              f"  python distill_train.py experiment={name} data.root=PATH trainer=ddp"]
    cell = Cell(name, header, [("data", "imagenet"), ("student", "timm"), ("teacher/model", "timm"),
                               ("kd", "deit_hard"), ("augment", "mixup"), ("optimizer", "adamw"),
                               ("scheduler", "cosine")])
    cell.set("data.root", None, "required: data.root=PATH to ILSVRC-2012 as train/<wnid>/ and val/<wnid>/ folders")
    cell.set("data.batch_size", GLOBAL_BATCH // DEVICES, f"per process: {GLOBAL_BATCH} over {DEVICES} GPUs")
    cell.set("student.name", f"timm.{model}", README)
    cell.set("student.model_kwargs", {"drop_path_rate": 0.1}, f"{MAIN} --drop-path 0.1")
    cell.set("teacher.model.name", "timm.regnety_160", f"{MAIN} --teacher-model regnety_160")
    cell.set("teacher.checkpoint", hub_checkpoint(TEACHER_FILE), "DeiT's --teacher-path file (its 'model' state dict)")
    cell.set("baseline", False)
    cell.set("trainer.accelerator", "gpu")
    cell.set("trainer.devices", DEVICES, "DeiT trains on 16 GPUs; any count with the same global batch")
    cell.set("trainer.strategy", "ddp")
    cell.set("trainer.precision", "bf16-mixed", "DeiT trains under fp16 autocast; bf16 here")
    cell.set("trainer.max_epochs", 300, f"{MAIN} --epochs 300")
    cell.set("optimizer.lr", 5.0e-4 * GLOBAL_BATCH / 512, f"{MAIN}: --lr 5e-4 x batch {GLOBAL_BATCH} / 512")
    cell.set("optimizer.weight_decay", 0.05, f"{MAIN} --weight-decay 0.05")
    cell.set("scheduler.eta_min", 1.0e-5, f"{MAIN} --min-lr 1e-5")
    cell.set("augment.alpha", 0.8, f"{MAIN} --mixup 0.8")
    cell.set("kd.terms.ce.label_smoothing", 0.1, f"{MAIN} --smoothing 0.1")
    cell.set("kd.terms.ce.weight", 0.5, "losses.py: base loss x (1 - alpha), --distillation-alpha 0.5")
    cell.set("kd.terms.deit.weight", 0.5, "losses.py: distillation loss x alpha 0.5")
    publish(cell, Published(published, f"{README}: {model}", teacher=TEACHER_TOP1, epoch="last",
                            teacher_note="DeiT paper, Table 2 (RegNetY-16GF)"))
    return cell


def build() -> list[Cell]:
    return [cell_for(*student) for student in STUDENTS]
