"""Comparative KD (alextxu/ckd; Wilf et al., WACV 2025): few teacher calls on CIFAR-100 subsets, RepDistiller's
teachers, the grid of its sweep files (ckd.yml, relational.yml, mixup.yml): every subset size, every student, every
arm. No sweep runs plain KD (relational.yml adds KD to rkd, dist and crd), so there is no KD cell. No result tables
are published (results went to wandb)."""
from __future__ import annotations

from dataclasses import dataclass

from scripts.experiments.cells import Cell, kd_defaults, sgd
from scripts.experiments.repdistiller import released_teacher

CKD = "alextxu/ckd"
# ckd.yml, relational.yml and mixup.yml sweep these subset sizes; train_val_frac 0.8 of each reaches the teacher.
CKD_SUBSETS = (2000, 2500, 3000, 3500, 4000, 4500, 5000, 6000)
# The sweeps' students, each with train_student.py get_corresponding_teacher's teacher.
CKD_STUDENTS = {"resnet32": "resnet110", "wrn_16_2": "wrn_40_2", "vgg8": "vgg13"}
LR_DECAY_TIMES = 3  # train_student.py --lr_decay_times: the plateau that stops training
FP32 = "fp32, as the anchor trained; trainer.precision=bf16-mixed is an opt-in speed switch"


@dataclass(frozen=True)
class Arm:
    title: str
    kd: str            # cfg/kd file
    augment: str
    sweep: str         # where the anchor runs it
    loss: str          # the loss, in the anchor's words


ARMS = {
    "ckd": Arm("CKD (pos_and_neg 2)", "ckd", "none", "ckd.yml relational ckd, pos_and_neg 2",
               "MSE of the tuples' logit differences to the teacher's (w_rel 1) plus MSE to the label differences "
               "(w_cls 1: criterion_cls is MSELoss for ckd), no cross-entropy, no KD (w_kd 0)"),
    "ckd_pn3": Arm("CKD (pos_and_neg 3)", "ckd", "none", "ckd.yml relational ckd, pos_and_neg 3",
                   "as ckd, on tuples of 2 positives and 1 negative"),
    "crd": Arm("CRD", "crd", "none", "relational.yml relational crd, w_kd 1.0",
               "CE 1 (w_cls) + KD 1 at T 4 (w_kd) + CRD 0.8 (w_rel_defaults['crd']) on the logits, negatives of other "
               "classes (CRDSample, --mode exact), nce_k 16384, nce_t 0.07, nce_m 0.5, feat_dim 128"),
    "dist": Arm("DIST", "dist", "none", "relational.yml relational dist, w_kd 1.0",
                "CE 1 + KD 1 at T 4 + DIST 2 (w_rel_defaults['dist']; tau 4, inter = intra = 1) on the logits"),
    "rkd": Arm("RKD", "rkd", "none", "relational.yml relational rkd, w_kd 1.0",
               "CE 1 + KD 1 at T 4 + RKD 1 (distance 25, angle 50) on the logits, on RKDSampler batches (5 "
               "examples of each of randomly ordered classes)"),
    "mixup": Arm("mixup", "teacher_ce", "mixup_interpolated", "mixup.yml relational mixup, w_kd 0.0",
                 "lam CE(s, y_i) + (1 - lam) CE(s, y_j) (w_cls 1) + lam CE(s, softmax v_i) + (1 - lam) CE(s, softmax "
                 "v_j) (w_rel 1, --loss_fn 0, T 1) on the cached outputs of the two components, one lam ~ Beta(1, 1) "
                 "per batch; no teacher call on the mixed input"),
    "mixup3": Arm("mixup3", "teacher_ce", "mixup3_interpolated", "mixup.yml relational mixup3, w_kd 0.0",
                  "as mixup, on three components; the CKD code has no mixup3 (its --relational choices lack it and no "
                  "sampler or helper implements it; README: \"mixes three samples instead of two\"), so the weights "
                  "are augment=mixup3's three normalised Beta(1, 1) draws"),
}


def header(name: str, arm: Arm, student: str, teacher: str, subset: int, budget: int) -> list:
    lines = [
        "Comparative KD (Wilf et al., WACV 2025; code alextxu/ckd, built on RepDistiller), CIFAR-100, few teacher",
        f"calls: {arm.title}, {teacher} -> {student} (train_student.py get_corresponding_teacher), subset_size",
        f"{subset}:",
        f"{budget} training examples reach the teacher (teacher.budget), {subset - budget} more are the validation",
        f"split (train_val_frac 0.8). Anchor run: {arm.sweep}. Loss: {arm.loss}. No result tables are published",
        "(results went to wandb). Recipe (train_student.py): SGD lr 0.05 (the sweeps also try 0.1 and 0.025)",
        "momentum 0.9, weight decay 5e-4, batch 64, crop + flip (use_DA 2); up to 1000 \"epochs\" of",
        "ceil(0.8 x subset_size / 64) steps (eval_every); on a 50-epoch validation plateau the best weights come",
        "back and the lr drops x0.1, and the third plateau (--lr_decay_times 3) ends training: lr 0.05, 0.005,",
        "0.0005 (callbacks.plateau_restart, max_decays 2). Reported: test top-1 at the best validation epoch",
        "(--epoch best). fp32, as CKD trained.",
        f"Teacher: RepDistiller's {teacher} (CKD README: the same released teachers), trained first with",
        "RepDistiller's recipe when teacher.checkpoint is null, or from RepDistiller's released checkpoint:",
        released_teacher(teacher),
    ]
    if arm.kd == "crd":
        lines += ["CRD embeds the logits (kd.terms.crd.student_tap / teacher_tap: logits; CKD's s_dim = t_dim = the",
                  "logits' width), so it reads the teacher's cached outputs like the other arms."]
    lines += ["Teacher outputs: cached once, one augmented view per example, and the student trains on fresh",
              "augmentations answered with that view's outputs (teacher=cached, teacher.student_views fresh;",
              "CKD's dataset/util.py CachedSubset)."]
    if arm.kd == "ckd":
        lines += ["Tuples (dataset/sampling/CKDSample.py): 64 a step from a pool of at most 100k (--max_rel_samples)",
                  "drawn once per run; positives and negatives go through the student in two forwards",
                  "(helper/CKDTrainHelpers.py)."]
    if arm.augment != "none":
        lines += ["Pairs here: each batch mixed with a permutation of itself; CKD's MixupSample draws 64 pairs a",
                  "step from a pool of at most 100k fixed pairs."]
    return [*lines, f"  python distill_train.py experiment={name} trainer=gpu"]


def teacher_recipe(cell: Cell) -> None:
    """RepDistiller's teacher recipe: on all training images, never stopped early."""
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


def loss(cell: Cell, name: str, arm: Arm) -> None:
    if arm.kd == "ckd":
        terms = kd_defaults("ckd")["terms"]
        cell.set("kd.terms.ce.weight", float(terms["ce"]["weight"]), "cfg/kd/ckd.yaml: no cross-entropy for ckd")
        cell.set("kd.terms.ckd.weight", 1.0, "train_student.py w_rel_defaults['ckd'] 1")
        cell.set("kd.terms.ckd.weight_label", 1.0, "train_student.py --w_cls 1.0 (MSELoss on label differences)")
        cell.set("kd.terms.ckd.pairs", "pool", "dataset/sampling/CKDSample.py")
        cell.set("kd.terms.ckd.pos_and_neg", 3 if name == "ckd_pn3" else 2, "ckd.yml pos_and_neg")
        cell.set("kd.terms.ckd.pool_size", 100_000, "train_student.py --max_rel_samples 100000")
        return
    cell.set("kd.terms.ce.weight", 1.0, "train_student.py --w_cls 1.0 (cross-entropy)")
    if arm.kd == "teacher_ce":
        cell.set("kd.terms.teacher_ce.weight", 1.0, "train_student.py w_rel_defaults['mixup'] 1")
        cell.set("kd.terms.teacher_ce.temperature", 1.0, "--loss_fn 0: CrossEntropyLoss to softmax(v), T 1")
        cell.set("augment.alpha", 1.0, "helper/MixupTrainHelpers.py np.random.beta(1, 1)")
        cell.set("augment.teacher_mix", "probabilities", "--loss_fn 0: the components' teacher softmaxes")
        return
    cell.set("kd.terms.kd._target_", "losses.KDTerm", "relational.yml w_kd 1.0: KD added to the relational term")
    cell.set("kd.terms.kd.weight", 1.0, "relational.yml w_kd 1.0")
    cell.set("kd.terms.kd.temperature", 4.0, "train_student.py --kd_T 4")
    if arm.kd == "crd":
        cell.set("kd.terms.crd.weight", 0.8, "train_student.py w_rel_defaults['crd']")
        for side in ("student", "teacher"):
            cell.set(f"kd.terms.crd.{side}_tap", "logits", "helper/CRDTrainHelpers.py: CRDLoss(logit_s, logit_t, ...)")
    elif arm.kd == "dist":
        cell.set("kd.terms.dist.weight", 2.0, "train_student.py w_rel_defaults['dist']")
    elif arm.kd == "rkd":
        cell.set("kd.terms.rkd.weight", 1.0, "train_student.py w_rel_defaults['rkd']")
        cell.set("kd.terms.rkd.student_tap", "logits", "helper/TrainHelpers.py get_rel_loss: RKDLoss(logit_s, logit_t)")
        cell.set("kd.terms.rkd.teacher_tap", "logits", "helper/TrainHelpers.py get_rel_loss")
        cell.set("kd.terms.rkd.per_class", 5, "dataset/sampling/RKDSampler.py m=5")


def ckd_cell(name: str, arm: Arm, student: str, subset: int) -> Cell:
    teacher = CKD_STUDENTS[student]
    budget = int(subset * 0.8)
    cell_name = f"ckd/{name}_{student}_budget{budget}"
    cell = Cell(cell_name, header(cell_name, arm, student, teacher, subset, budget),
                [("data", "cifar100"), ("student", student), ("teacher", "cached"), ("teacher/model", teacher),
                 ("kd", arm.kd), ("augment", arm.augment), ("optimizer", "sgd"), ("scheduler", "none")])
    cell.set("baseline", False)
    cell.set("data.batch_size", 64, "train_student.py --batch_size 64")
    cell.set("data.val_size", subset - budget, "train_val_frac 0.8: 20% of subset_size validates")
    cell.set("trainer.max_epochs", 1000, "train_student.py --epochs 1000")
    cell.set("trainer.precision", "32-true", FP32)
    sgd(cell, 0.05, 5.0e-4, "train_student.py", "train_student.py --learning_rate 0.05 (default)")
    cell.set("callbacks.plateau_restart._target_", "tasks.callbacks.PlateauRestart")
    cell.set("callbacks.plateau_restart.monitor", "val/top1", "CKD selects on validation accuracy")
    cell.set("callbacks.plateau_restart.mode", "max")
    cell.set("callbacks.plateau_restart.patience", 50, "train_student.py --patience 50")
    cell.set("callbacks.plateau_restart.factor", 0.1, "--lr_decay_rate 0.1")
    cell.set("callbacks.plateau_restart.max_decays", LR_DECAY_TIMES - 1,
             f"--lr_decay_times {LR_DECAY_TIMES}: the {LR_DECAY_TIMES}rd plateau ends training")
    cell.set("teacher.budget", budget, f"0.8 x subset_size {subset}")
    cell.set("teacher.source", "single")
    cell.set("teacher.student_views", "fresh", "dataset/util.py CachedSubset: one cached view, fresh inputs")
    teacher_recipe(cell)
    loss(cell, name, arm)
    return cell


def build() -> list[Cell]:
    return [ckd_cell(name, arm, student, subset)
            for name, arm in ARMS.items() for student in CKD_STUDENTS for subset in CKD_SUBSETS]
