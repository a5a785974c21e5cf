"""Comparative KD (alextxu/ckd; Wilf et al., WACV 2025): few teacher calls on CIFAR-100 subsets, RepDistiller's
teachers. No result tables are published (results went to wandb)."""
from __future__ import annotations

from scripts.experiments.cells import Cell, kd_defaults, sgd
from scripts.experiments.repdistiller import rd_name, released_teacher

CKD_SUBSETS = (2000, 4000, 6000)  # ckd.yml / relational.yml / mixup.yml sweep 2000..6000; train_val_frac 0.8
CKD_METHODS = {
    # name: (title, cfg/kd, augment, teacher kind, extra KD term weight (relational.yml w_kd), note)
    "kd": ("KD", "kd", "none", "cached", None, "CE 1 (w_cls) + KD 1 (relational.yml w_kd 1.0) at T 4"),
    "crd": ("CRD", "crd", "none", "single", 1.0, "CE 1 + KD 1 (relational.yml w_kd 1.0) + CRD 0.8 (w_rel default)"),
    "dist": ("DIST", "dist", "none", "cached", 1.0, "CE 1 + KD 1 (relational.yml w_kd 1.0) + DIST 2 (w_rel default)"),
    "ckd": ("CKD", "ckd", "none", "cached", None, "cfg/kd/ckd.yaml: comparative term 1 (w_rel) with label differences 1"),
    "mixup": ("mixup", "kd", "mixup", "single", None, "CE 1 + teacher-labelled mixup term 1 (mixup.yml: w_kd 0, w_rel 1)"),
    "mixup_interpolated": ("mixup-interpolated", "kd", "mixup_interpolated", "cached", None,
                           "as mixup, the teacher's cached logits mixed instead of a teacher call"),
}


def build() -> list[Cell]:
    cells = []
    teacher, student = "resnet110", "resnet32"
    for method, (title, kd, augment, kind, w_kd, weights) in CKD_METHODS.items():
        for subset in CKD_SUBSETS:
            budget, val = int(subset * 0.8), subset - int(subset * 0.8)
            name = f"ckd/{method}_budget{budget}"
            header = [
                "Comparative KD (Wilf et al., WACV 2025; code alextxu/ckd, built on RepDistiller), CIFAR-100, few teacher",
                f"calls: {title}, {rd_name(teacher)} -> {student} (the first student of ckd.yml's sweep; teacher from",
                f"train_student.py get_corresponding_teacher), subset_size {subset}: {budget} training examples reach the teacher",
                f"(teacher.budget), {val} more are the validation split (train_val_frac 0.8). No result tables are published",
                "(results went to wandb). Recipe (train_student.py defaults, ckd.yml / relational.yml / mixup.yml): SGD lr",
                "0.05 (swept over 0.1/0.05/0.025) momentum 0.9, weight decay 5e-4, batch 64, crop + flip (use_DA 2), T 4;",
                f"loss: {weights}. CKD trains up to 1000 \"epochs\" of 0.8*subset_size examples and, on a 50-epoch",
                "validation plateau, reloads the best weights and decays the lr x0.1, stopping after 3 decays (here",
                "callbacks.plateau_restart, tasks/callbacks.py PlateauRestart). The reported number is test top-1 at the",
                "best validation epoch (--epoch best).",
                f"Teacher: RepDistiller's {teacher} (CKD README: the same released teachers), trained first with",
                "RepDistiller's recipe when teacher.checkpoint is null, or from RepDistiller's released checkpoint:",
                released_teacher(teacher),
            ]
            if kind == "cached":
                header.append("Teacher outputs are cached once (teacher=cached), so teacher calls stay within the budget.")
            elif method == "crd":
                header.append("CRD reads the teacher's embeddings every step (teacher=single under the budget; CKD's CRD embeds")
                header.append("cached logits instead), so teacher calls repeat on the same budget examples.")
            else:
                header.append("Mixup asks the teacher about every mixed input (teacher=single under the budget).")
            header.append(f"  python distill_train.py experiment={name} trainer=gpu")
            cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher", kind),
                                       ("teacher/model", teacher), ("kd", kd), ("augment", augment),
                                       ("optimizer", "sgd"), ("scheduler", "none")])
            cell.set("baseline", False)
            cell.set("data.batch_size", 64, "train_student.py --batch_size 64")
            cell.set("data.val_size", val, "train_val_frac 0.8: 20% of subset_size validates")
            cell.set("trainer.max_epochs", 1000, "train_student.py --epochs 1000")
            sgd(cell, 0.05, 5.0e-4, "train_student.py", "train_student.py --learning_rate 0.05 (default)")
            cell.set("callbacks.plateau_restart._target_", "tasks.callbacks.PlateauRestart")
            cell.set("callbacks.plateau_restart.monitor", "val/top1", "CKD selects on validation accuracy")
            cell.set("callbacks.plateau_restart.mode", "max")
            cell.set("callbacks.plateau_restart.patience", 50, "train_student.py --patience 50")
            cell.set("callbacks.plateau_restart.factor", 0.1, "lr x0.1 at each plateau")
            cell.set("callbacks.plateau_restart.max_decays", 3, "stops at the plateau after the third decay")
            cell.set("teacher.budget", budget, f"0.8 x subset_size {subset}")
            if kind == "cached":
                cell.set("teacher.source", "single")
            # The teacher is RepDistiller's: its own recipe, on all training images, never stopped early.
            rd = "RepDistiller train_teacher.py"
            cell.set("teacher.recipe.trainer.max_epochs", 240, rd)
            cell.set("teacher.recipe.data.batch_size", 64, rd)
            cell.set("teacher.recipe.data.val_size", 0, f"{rd}: all 50k images, evaluated on test")
            cell.set("teacher.recipe.scheduler._target_", "torch.optim.lr_scheduler.MultiStepLR", rd)
            cell.set("teacher.recipe.scheduler._partial_", True)
            cell.set("teacher.recipe.scheduler.milestones", [150, 180, 210], rd)
            cell.set("teacher.recipe.scheduler.gamma", 0.1, rd)
            cell.set("teacher.recipe.callbacks.plateau_restart.patience", 240, "never acts on a 240-epoch teacher")
            cell.set("teacher.recipe.seed", 0, "one teacher for every student seed (CKD loads one released checkpoint)")
            if kd == "kd":
                cell.set("kd.terms.ce.weight", 1.0, "train_student.py --w_cls 1.0 (cross-entropy)")
                cell.set("kd.terms.kd.weight", 1.0,
                         "relational.yml w_kd 1.0" if method == "kd" else "mixup.yml w_rel 1 (the teacher-labelled mixed term)")
                cell.set("kd.terms.kd.temperature", 4.0, "train_student.py --kd_T 4")
            elif kd == "ckd":
                terms = kd_defaults("ckd")["terms"]
                cell.set("kd.terms.ce.weight", float(terms["ce"]["weight"]), "cfg/kd/ckd.yaml (CKD's ckd.yml defaults)")
                cell.set("kd.terms.ckd.weight", float(terms["ckd"]["weight"]), "w_rel_defaults['ckd'] 1")
                cell.set("kd.terms.ckd.weight_label", float(terms["ckd"]["weight_label"]), "w_cls 1")
            else:
                rel = {"crd": ("crd", 0.8), "dist": ("dist", 2.0)}[kd]
                cell.set("kd.terms.ce.weight", 1.0, "train_student.py --w_cls 1.0")
                cell.set(f"kd.terms.{rel[0]}.weight", rel[1], f"train_student.py w_rel_defaults['{rel[0]}']")
                cell.set("kd.terms.kd._target_", "losses.KDTerm", "KD added as the README documents (combining terms)")
                cell.set("kd.terms.kd.weight", w_kd, "relational.yml w_kd 1.0")
                cell.set("kd.terms.kd.temperature", 4.0, "train_student.py --kd_T 4")
            if augment in ("mixup", "mixup_interpolated"):
                cell.set("augment.alpha", 1.0, "mixup Beta(1, 1)")
            cells.append(cell)
    return cells
