"""torchdistill (yoshitomo-matsubara/torchdistill; Matsubara, 2021): its ImageNet ResNet-18 benchmark rows
(docs/source/_static/benchmarks/imagenet-resnet18_kd.tsv), one cell per row that this framework can run.

Each cell runs the process layout of the run that produced the published number, as its log shows
(`world_size`, `adjust_lr`, `sync_bn` in the log's first line, iterations per epoch): the number of processes
(trainer.devices, DDP), the per-process batch, and the learning rate the run actually used (`-adjust_lr` multiplies
the config's lr by the number of processes).

The teacher's BatchNorm: until commit fcc8727 (2023-05-02, "Do not touch teacher model by default") torchdistill put
the teacher in eval mode every epoch (core/interfaces/pre_epoch_proc.py); since, nothing does, so the teacher of the
rows published after it (ICKD and DIST in January 2024, SRD in May 2024, DIST+ in July 2025) ran in train mode: its
BatchNorm on each batch's statistics (the SRD log's final teacher evaluation, 73.41, shows its running statistics
moved from torchvision's 73.31). Those cells set teacher.batchnorm=batch (the batch statistics; the project never
moves the teacher's running statistics); the rrpr2020 and nlp-oss2023 runs (2020-2021 logs) had it in eval mode."""
from __future__ import annotations

from dataclasses import dataclass

from scripts.experiments.cells import Cell, Published, multistep, phases_with, publish, sgd
from scripts.experiments.imagenet import TITLES, imagenet_common, imagenet_defaults, imagenet_header

TD = "torchdistill configs/official/ilsvrc2012/yoshitomo-matsubara/"
TD_SAMPLE = "torchdistill configs/sample/ilsvrc2012/"
TD_TABLE = "docs/source/_static/benchmarks/imagenet-resnet18_kd.tsv"
# The teacher's top-1 as each published run evaluated it ("* Acc@1" of the teacher in the logs).
LOGGED_TEACHER = {"resnet34": 73.31, "resnet18": 69.76}


@dataclass(frozen=True)
class Row:
    method: str                     # the cell's name: torchdistill/<method>_<teacher>_resnet18
    kd: str                         # cfg/kd/<kd>.yaml
    teacher: str
    file: str                       # the anchor config, under TD unless it starts with "torchdistill "
    title: str
    published: tuple[str | None, float]  # the tsv's "original work" and "torchdistill" columns
    loss: str                       # the objective in words, for the header
    epochs: int
    processes: int                  # world_size of the published run
    batch: int                      # per process
    config_lr: float                # the config's lr; the run's is config_lr x processes where adjust_lr
    weight_decay: float
    milestones: tuple[int, ...]
    terms: tuple[tuple[str, object, str], ...]  # (key under kd., value, where the anchor sets it)
    adjust_lr: bool = False
    sync_bn: bool = False
    logged: bool = True             # the config's .log beside it is the published run
    provenance: str = ""            # where not logged: which run the number came from, as far as known
    before: str = ""                # what runs before the main phase, in words
    settings: tuple[tuple[str, object, str], ...] = ()  # top-level keys: (key, value, note)
    optimizer: str = "sgd"          # or "adamw" (its lr and weight decay; torch's other defaults, as torchdistill)
    teacher_batchnorm: str = "running"  # "batch": the run's teacher was in train mode (see the module docstring)
    teacher_accuracy: tuple[float, str] | None = None  # the teacher's top-1 and its source, if not LOGGED_TEACHER's

    @property
    def lr(self) -> float:
        return round(self.config_lr * self.processes, 6) if self.adjust_lr else self.config_lr

    @property
    def log(self) -> str:
        return self.file.rsplit(".", 1)[0] + ".log"


ONE_GPU_RUN = ("{log} is a 3-process run (world_size=3, lr 0.3) whose best and final top-1, {logged}, is not the "
               "published {published}; rrpr2020/README.md says each file is from the 3-GPU or the 1-GPU run, whichever "
               "was better, so the published number is taken to be the 1-GPU run's (its config and log are only in the "
               "release's imagenet.zip, not read here): one process, batch 256, the config's lr 0.1. Unverified: that "
               "run's own log would settle it")
SSKD_NOTE = "SSKDLoss (loss_weights, kl_temp, ss_temp, tf_temp, ss_ratio, tf_ratio)"
ROWS = (
    Row("kd", "kd", "resnet34", "rrpr2020/kd-resnet18_from_resnet34.yaml", "KD", (None, 71.37),
        "KDLoss T 1.0, alpha 0.5 (torchdistill's alpha weighs the cross-entropy: CE 0.5 + KD 0.5).",
        100, 3, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 0.5, "KDLoss alpha 0.5 (weight on CE)"), ("terms.kd.weight", 0.5, "KDLoss 1 - alpha"),
         ("terms.kd.temperature", 1.0, "KDLoss temperature 1.0")), adjust_lr=True),
    Row("at", "at", "resnet34", "rrpr2020/at-resnet18_from_resnet34.yaml", "AT", ("70.70", 70.90),
        "CE 1 + ATLoss 1000 on layer3 and layer4 (pair weights 1, mode 'code': p 2).",
        100, 1, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.at.weight", 1000.0, "at_loss weight 1000.0"),
         ("terms.at.stages", [2, 3], "at_pairs: layer3, layer4"),
         ("terms.at.p", 2.0, "ATLoss mode 'code' squares the activations")), logged=False,
        provenance=ONE_GPU_RUN.format(log="rrpr2020/at-resnet18_from_resnet34.log", logged="70.5566",
                                      published="70.90")),
    Row("ft", "ft", "resnet34", "rrpr2020/ft-resnet18_from_resnet34.yaml", "FT", ("71.43 (ILSVRC 2015)", 71.56),
        "CE 1 + FTLoss 1000, p 1, on the whole flattened factors (FTLoss; RepDistiller's default takes channel means); "
        "paraphraser and translator without BatchNorm (uses_bn: False).",
        90, 1, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "stage2 ce weight 1.0"),
         ("terms.ft.weight", 1000.0, "stage2 factor_transfer weight 1000.0"),
         ("terms.ft.rate", 0.5, "paraphraser k 0.5"), ("terms.ft.p", 1, "FTLoss p 1"), ("terms.ft.stage", -1, "layer4"),
         ("terms.ft.form", "full", "FTLoss: the L2-normalised whole flattened factors"),
         ("terms.ft.translator_batchnorm", False, "translator uses_bn: False (the paraphraser's default is already off)"),
         ("phases", phases_with("ft", epochs=1, lr=0.01), "stage1: num_epochs 1, lr 0.01, reconstruction loss only")),
        before="stage 1: the paraphraser (k 0.5) on layer4 for 1 epoch at lr 0.01 (a pre-training phase with its "
               "own lr); stage 2: "),
    Row("crd", "crd", "resnet34", "rrpr2020/crd-resnet18_from_resnet34.yaml", "CRD", ("71.17", 70.93),
        "CE 1 + CRD 0.8 on the pooled features, 128-d, 16384 negatives, T 0.07, momentum 0.5.",
        100, 3, 85, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "model_term factor 1.0"), ("terms.crd.weight", 0.8, "crd factor 0.8"),
         ("terms.crd.feat_dim", 128, "Linear4CRD out_features 128"),
         ("terms.crd.num_negatives", 16384, "num_negative_samples 16384"),
         ("terms.crd.temperature", 0.07, "CRDLoss temperature 0.07"),
         ("terms.crd.momentum", 0.5, "CRDLoss momentum 0.5"),
         ("terms.crd.memory_scope", "process", "CRDLoss is a criterion outside DDP: each of the 3 processes keeps "
                                               "its own memory, updated from its own rows")), sync_bn=True),
    Row("sskd", "sskd", "resnet34", "rrpr2020/sskd-resnet18_from_resnet34.yaml", "SSKD", ("71.62", 70.09),
        "SSKDLoss loss_weights [CE 1.0, KD 0.9, SS 10.0, TF 2.7], T 4 / 0.5 / 4, ss_ratio 0.75, tf_ratio 1.0.",
        100, 3, 85, 0.1, 5.0e-4, (30, 60, 90),
        (*((f"terms.sskd.{key}", value, SSKD_NOTE) for key, value in (
            ("weight", 1.0), ("weight_ce", 1.0), ("weight_kd", 0.9), ("weight_ss", 10.0), ("weight_tf", 2.7),
            ("temperature_kd", 4.0), ("temperature_ss", 0.5), ("temperature_tf", 4.0), ("ratio_ss", 0.75),
            ("ratio_tf", 1.0))),
         ("phases", phases_with("sskd", epochs=30, lr=0.1), "stage1: num_epochs 30, lr 0.1")),
        before="stage 1: the teacher's self-supervision head for 30 epochs at lr 0.1 (x0.1 at 10/20 there; a "
               "pre-training phase here keeps one lr); stage 2: "),
    Row("tfkd", "tfkd_self", "resnet18", "rrpr2020/tfkd-resnet18_from_resnet18.yaml", "Tf-KD (self-teacher)",
        ("70.42", 70.52), "KDLoss T 1.0, alpha 0.9 (weight on CE: CE 0.9 + KD 0.1).",
        90, 1, 256, 0.1, 1.0e-4, (30, 60, 80),
        (("terms.ce.weight", 0.9, "KDLoss alpha 0.9 (weight on CE)"), ("terms.kd.weight", 0.1, "KDLoss 1 - alpha"),
         ("terms.kd.temperature", 1.0, "KDLoss temperature 1.0")), logged=False,
        provenance=ONE_GPU_RUN.format(log="rrpr2020/tfkd-resnet18_from_resnet18.log", logged="70.2126",
                                      published="70.52"),
        before="the teacher is torchvision's pretrained ResNet-18; "),
    Row("reviewkd", "reviewkd", "resnet34", "nlp-oss2023/kr-resnet18_from_resnet34.yaml", "KR (ReviewKD)",
        ("71.61", 71.64),
        "CE 1 + one HierarchicalContextLoss per level (layer1-4 and avgpool, weight 1 each, no warm-up), mid channels "
        "512. torchdistill taps the inputs of each block's last ReLU (pre-activation); torchvision's shared in-place "
        "ReLU leaves no such tap here, so the stage outputs stand in (see models/torchvision_models.py). The published "
        "log ran the sample config it names (configs/sample/ilsvrc2012/single_stage/kr/resnet18_from_resnet34.yaml at "
        "the time: batch 64 per process, lr 0.025; 6673 iterations per epoch = 3 x 64), not this file's batch 32.",
        100, 3, 64, 0.025, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"),
         ("terms.reviewkd.weight", 1.0, "each level's HCL weight 1.0 (the term sums the levels)"),
         ("terms.reviewkd.stages", [0, 1, 2, 3], "abfs on layer1..layer4 (+ avgpool, always included)"),
         ("terms.reviewkd.warmup_epochs", 0, "no warm-up in torchdistill")), adjust_lr=True),
    Row("dist", "dist", "resnet34", TD_SAMPLE + "dist/resnet18_from_resnet34.yaml", "DIST",
        ("72.07", 71.95), "CE 1 + DISTLoss 2.0 with beta 1, gamma 1, tau 1.",
        100, 1, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.dist.weight", 2.0, "dist weight 2.0"),
         ("terms.dist.weight_inter", 1.0, "DISTLoss beta 1.0"), ("terms.dist.weight_intra", 1.0, "DISTLoss gamma 1.0"),
         ("terms.dist.temperature", 1.0, "DISTLoss tau 1.0")), logged=False, teacher_batchnorm="batch"),
    Row("l2", "l2_embedding", "resnet34", "rrpr2020/ce_l2-resnet18_from_resnet34.yaml", "L2 (CE + L2)",
        ("70.90", 71.08), "CE 1 + 15 x MSELoss between the student's and the teacher's avgpool outputs (512-d).",
        90, 3, 171, 0.2, 1.0e-4, (30, 60),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.l2.weight", 15.0, "l2based weight 15.0"),
         ("terms.l2.tap", "embedding", "l2based MSELoss on avgpool outputs"))),
    Row("pad_l2", "pad_l2_embedding", "resnet34", "rrpr2020/pad_l2-resnet18_from_resnet34.yaml", "PAD-L2",
        ("71.71", 71.71),
        "CE 1 + PADL2Loss 1 (eps 1e-6) between the avgpool outputs, the log variance from VarianceBranch4PAD "
        "(Linear 512 -> 512 + BatchNorm1d) on the student's.",
        30, 3, 171, 0.002, 1.0e-4, (30,),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.pad_l2.weight", 1.0, "pad_l2 weight 1.0"),
         ("terms.pad_l2.eps", 1.0e-6, "PADL2Loss eps 0.000001"),
         ("terms.pad_l2.tap", "embedding", "PADL2Loss on student_model.avgpool / avgpool outputs")),
        before="the student starts from the L2 cell's student (torchdistill/l2_resnet34_resnet18; src_ckpt is the "
               "ce_l2 run's saved, i.e. best-epoch, checkpoint): pass student_init_checkpoint=<that run>/checkpoints/"
               "best.ckpt (scripts/reproduce_torchdistill.sh does); then ",
        settings=(("student_init_checkpoint", "<the L2 cell's run folder>/checkpoints/best.ckpt",
                   "required: the L2 cell's best checkpoint (pad_l2 src_ckpt)"),)),
    Row("ickd", "ickd", "resnet34", TD_SAMPLE + "ickd/resnet18_from_resnet34.yaml", "ICKD", ("72.19", 68.34),
        "KDLoss T 1.0, alpha 0.5 (CE 0.5 + KD 0.5) + ChSimLoss 500 between the teacher's layer4 and the student's "
        "layer4 through Student4ICKD's embedding (3x3 conv 512 -> 512, no bias, + BatchNorm).",
        100, 1, 256, 0.0002, 5.0e-4, (30, 60, 90),
        (("terms.ce.weight", 0.5, "KDLoss alpha 0.5 (weight on CE)"), ("terms.kd.weight", 0.5, "KDLoss 1 - alpha"),
         ("terms.kd.temperature", 1.0, "KDLoss temperature 1.0"), ("terms.ickd.weight", 500.0, "cs weight 500"),
         ("terms.ickd.stage", -1, "ChSimLoss pair: layer4 / embed_dict.embed1 on student_model.layer4")),
        logged=False, optimizer="adamw", teacher_batchnorm="batch"),
    Row("srd", "srd", "resnet34", "torchdistill configs/official/ilsvrc2012/roymiles/aaai2024/"
        "srd-resnet18_from_resnet34.yaml", "SRD", ("71.63", 71.92),
        "CE 1 + SRDLoss 1: 2 log(sum |s - t|^4) between the batch-normalised (BatchNorm1d, affine False, eps 1e-4) "
        "pooled layer4 features, the student's through a Linear 512 -> 512 (SRDModelWrapper), + KL at T 1.",
        100, 1, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.srd.weight", 1.0, "srd_loss weight 1.0"),
         ("terms.srd.exponent", 4.0, "SRDLoss exponent 4.0"), ("terms.srd.temperature", 1.0, "SRDLoss temperature 1.0"),
         ("terms.srd.stage", -1, "SRDModelWrapper input_module model.layer4")),
        teacher_batchnorm="batch",
        teacher_accuracy=(73.41, "the log's final teacher evaluation (Acc@1 73.414): its BatchNorm running statistics "
                                 "had moved in train mode (torchvision: 73.31)")),
    Row("dist_plus", "dist_plus", "resnet34", TD_SAMPLE + "dist_plus/resnet18_from_resnet34.yaml", "DIST+",
        ("72.39", 71.37),
        "CE 1 + DISTPlusLoss 2.0 with beta 2, gamma 2 (intra), iota 1 (channel relation, added as the correlation "
        "itself, torchdistill's sign), kappa 1 (spatial relation), tau 1, on both models' layer4.",
        100, 1, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.dist_plus.weight", 2.0, "dist weight 2.0"),
         ("terms.dist_plus.weight_inter", 2.0, "DISTPlusLoss beta 2.0"),
         ("terms.dist_plus.weight_intra", 2.0, "DISTPlusLoss gamma 2.0 (DISTLoss's intra weight)"),
         ("terms.dist_plus.weight_channel", 1.0, "DISTPlusLoss iota 1.0"),
         ("terms.dist_plus.weight_spatial", 1.0, "DISTPlusLoss kappa 1.0"),
         ("terms.dist_plus.temperature", 1.0, "DISTPlusLoss tau 1.0"),
         ("terms.dist_plus.channel_form", "correlation", "DISTPlusLoss.channel_relation returns the correlation"),
         ("terms.dist_plus.stage", -1, "student/teacher_feature_module_path layer4")),
        logged=False, teacher_batchnorm="batch"),
)


def source_of(row: Row) -> str:
    return row.file if row.file.startswith("torchdistill ") else TD + row.file


def layout_text(row: Row) -> str:
    """The published run's process layout in words, and how to run its global batch on other device counts."""
    if not row.logged:
        unknown = "a sample config: no log of the published run says how many processes it used"
        return f"batch {row.batch} on one process ({row.provenance or unknown})"
    if row.processes == 1:
        return f"batch {row.batch} on one process ({row.log}: world_size=1)"
    total = row.processes * row.batch
    bn = ("synchronised BatchNorm, so on N GPUs its statistics still cover the global batch" if row.sync_bn else
          f"BatchNorm per process, so on N GPUs its statistics cover {total}/N examples instead of {row.batch}")
    lr = f", lr {row.config_lr:g} x {row.processes} (-adjust_lr)" if row.adjust_lr else ""
    return (f"{row.processes} processes x batch {row.batch} = {total}{lr} ({row.log}: world_size={row.processes}); "
            f"the cell runs that layout (trainer.devices={row.processes}, DDP): on N GPUs keep the global batch with "
            f"trainer.devices=N data.batch_size={total}/N ({bn})")


def header_lines(row: Row, name: str) -> list[str]:
    original, ours = row.published
    published = f"Published ({TD_TABLE}): " + (f"original {original}, " if original else "") + f"torchdistill {ours:.2f}."
    decay = f"{row.weight_decay:.0e}".replace("e-0", "e-")  # 1e-4, as the configs write it
    optimizer = f"SGD lr {row.lr:g} momentum 0.9" if row.optimizer == "sgd" else f"AdamW lr {row.lr:g}"
    teacher = (" The teacher ran in train mode (BatchNorm on batch statistics: teacher.batchnorm=batch; its "
               "running statistics stay put here)." if row.teacher_batchnorm == "batch" else "")
    recipe = (f"{row.before}{row.epochs} epochs, {optimizer} weight decay {decay}, "
              f"{layout_text(row)}, x0.1 at {'/'.join(map(str, row.milestones))}; {row.loss}{teacher}")
    return imagenet_header([
        f"torchdistill (Matsubara, 2021), ImageNet (ILSVRC-2012), {row.title} {TITLES[row.teacher]} -> ResNet-18.",
        published, f"Recipe ({source_of(row)}):", recipe], row.teacher, name, launch="")


def cell_for(row: Row) -> Cell:
    name = f"torchdistill/{row.method}_{row.teacher}_resnet18"
    cell = Cell(name, header_lines(row, name),
                imagenet_defaults("resnet18", [("kd", row.kd), ("optimizer", row.optimizer), ("scheduler", "multistep")]))
    imagenet_common(cell, row.teacher, "resnet18", "torchdistill")
    where = row.log if row.logged else row.file
    cell.set("trainer.accelerator", "gpu", "torchdistill trains on GPUs")
    devices_note = (f"{where}: world_size={row.processes}" if row.logged else
                    "the published run taken to be the 1-GPU one (see the header)" if row.provenance else where)
    cell.set("trainer.devices", row.processes, devices_note)
    if row.processes > 1:
        cell.set("trainer.strategy", "ddp", f"{row.log}: distributed training (torchrun)")
        cell.set("trainer.sync_batchnorm", row.sync_bn, f"{row.log}: sync_bn={row.sync_bn}")
    cell.set("data.batch_size", row.batch, f"{row.file} train_data_loader batch_size (per process)")
    cell.set("trainer.max_epochs", row.epochs, f"{row.file} num_epochs")
    lr_note = f"{row.file} lr {row.config_lr:g} x {row.processes} processes (-adjust_lr)" if row.adjust_lr else row.file
    if row.optimizer == "sgd":
        sgd(cell, row.lr, row.weight_decay, row.file, lr_note)
    else:  # torchdistill passes lr and weight_decay only: torch's betas (0.9, 0.999) and eps 1e-8, as cfg/optimizer
        cell.set("optimizer.lr", row.lr, lr_note)
        cell.set("optimizer.weight_decay", row.weight_decay, row.file)
    if row.teacher_batchnorm != "running":
        cell.set("teacher.batchnorm", row.teacher_batchnorm, "torchdistill (since fcc8727) never puts the teacher in "
                                                             "eval mode: its BatchNorm normalises with batch statistics")
    multistep(cell, list(row.milestones), 0.1, row.file)
    cell.set_rows("kd", row.terms)
    cell.set_rows("", row.settings)
    teacher_note = (f"{row.log}: the teacher's top-1 as the run evaluated it" if row.logged else
                    "torchvision's figure for these weights (no log of this run is published)")
    teacher_accuracy = LOGGED_TEACHER[row.teacher]
    if row.teacher_accuracy is not None:
        teacher_accuracy, teacher_note = row.teacher_accuracy[0], f"{row.log}: {row.teacher_accuracy[1]}"
    publish(cell, Published(row.published[1], f"yoshitomo-matsubara/torchdistill {TD_TABLE}",
                            teacher=teacher_accuracy, epoch="best", teacher_note=teacher_note))
    return cell


def build() -> list[Cell]:
    return [cell_for(row) for row in ROWS]
