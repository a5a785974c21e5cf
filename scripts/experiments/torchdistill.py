"""torchdistill (yoshitomo-matsubara/torchdistill; Matsubara, 2021): its ImageNet ResNet-18 benchmark rows
(docs/source/_static/benchmarks/imagenet-resnet18_kd.tsv), one cell per row that this framework can run."""
from __future__ import annotations

from dataclasses import dataclass

from scripts.experiments.cells import Cell, multistep, sgd
from scripts.experiments.imagenet import imagenet_common, imagenet_header, torchvision_pair

TD = "torchdistill configs/official/ilsvrc2012/yoshitomo-matsubara/"
TD_TABLE = "docs/source/_static/benchmarks/imagenet-resnet18_kd.tsv"
TITLES = {"resnet34": "ResNet-34", "resnet18": "ResNet-18"}


@dataclass(frozen=True)
class Row:
    method: str                     # the cell's name: torchdistill/<method>_<teacher>_resnet18
    kd: str                         # cfg/kd/<kd>.yaml
    teacher: str
    file: str                       # the anchor config, under TD unless it starts with "torchdistill "
    title: str
    published: tuple[str | None, str]  # the tsv's "original work" and "torchdistill" columns
    recipe: str                     # the recipe in words, for the header
    epochs: int
    batch: int
    lr: float
    weight_decay: float
    milestones: tuple[int, ...]
    terms: tuple[tuple[str, object, str], ...]  # (key under kd., value, where the anchor sets it)


SSKD_NOTE = "SSKDLoss (loss_weights, kl_temp, ss_temp, tf_temp, ss_ratio, tf_ratio)"
ROWS = (
    Row("kd", "kd", "resnet34", "rrpr2020/kd-resnet18_from_resnet34.yaml", "KD", (None, "71.37"),
        "100 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, batch 256, x0.1 at 30/60/90; KDLoss T 1.0, alpha 0.5 "
        "(torchdistill's alpha weighs the cross-entropy: CE 0.5 + KD 0.5).",
        100, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 0.5, "KDLoss alpha 0.5 (weight on CE)"), ("terms.kd.weight", 0.5, "KDLoss 1 - alpha"),
         ("terms.kd.temperature", 1.0, "KDLoss temperature 1.0"))),
    Row("at", "at", "resnet34", "rrpr2020/at-resnet18_from_resnet34.yaml", "AT", ("70.70", "70.90"),
        "100 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, batch 256, x0.1 at 30/60/90; CE 1 + ATLoss 1000 on "
        "layer3 and layer4 (pair weights 1, mode 'code': p 2).",
        100, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.at.weight", 1000.0, "at_loss weight 1000.0"),
         ("terms.at.stages", [2, 3], "at_pairs: layer3, layer4"),
         ("terms.at.p", 2.0, "ATLoss mode 'code' squares the activations"))),
    Row("ft", "ft", "resnet34", "rrpr2020/ft-resnet18_from_resnet34.yaml", "FT", ("71.43 (ILSVRC 2015)", "71.56"),
        "stage 1: the paraphraser (k 0.5) on layer4 for 1 epoch (lr 0.01 there; our pre-training phases keep the main "
        "lr 0.1); stage 2: 90 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, batch 256, x0.1 at 30/60/90; CE 1 + "
        "FTLoss 1000, p 1.",
        90, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "stage2 ce weight 1.0"),
         ("terms.ft.weight", 1000.0, "stage2 factor_transfer weight 1000.0"),
         ("terms.ft.rate", 0.5, "paraphraser k 0.5"), ("terms.ft.p", 1, "FTLoss p 1"), ("terms.ft.stage", -1, "layer4"),
         ("phases", [{"name": "paraphraser", "epochs": 1, "terms": {"ft": 1.0}, "train": ["objective"]}],
          "stage1 num_epochs 1, reconstruction loss only"))),
    Row("crd", "crd", "resnet34", "rrpr2020/crd-resnet18_from_resnet34.yaml", "CRD", ("71.17", "70.93"),
        "100 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, batch 85 per process (rrpr2020 README: 3-GPU "
        "distributed or 1 GPU), x0.1 at 30/60/90; CE 1 + CRD 0.8 on the pooled features, 128-d, 16384 negatives, "
        "T 0.07, momentum 0.5.",
        100, 85, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "model_term factor 1.0"), ("terms.crd.weight", 0.8, "crd factor 0.8"),
         ("terms.crd.feat_dim", 128, "Linear4CRD out_features 128"),
         ("terms.crd.num_negatives", 16384, "num_negative_samples 16384"),
         ("terms.crd.temperature", 0.07, "CRDLoss temperature 0.07"),
         ("terms.crd.momentum", 0.5, "CRDLoss momentum 0.5"))),
    Row("sskd", "sskd", "resnet34", "rrpr2020/sskd-resnet18_from_resnet34.yaml", "SSKD", ("71.62", "70.09"),
        "stage 1: the teacher's self-supervision head for 30 epochs (x0.1 at 10/20 there; our pre-training phases keep "
        "the starting lr); stage 2: 100 epochs, SGD lr 0.1 momentum 0.9 weight decay 5e-4, batch 85, x0.1 at 30/60/90; "
        "SSKDLoss loss_weights [CE 1.0, KD 0.9, SS 10.0, TF 2.7], T 4 / 0.5 / 4, ss_ratio 0.75, tf_ratio 1.0.",
        100, 85, 0.1, 5.0e-4, (30, 60, 90),
        (*((f"terms.sskd.{key}", value, SSKD_NOTE) for key, value in (
            ("weight", 1.0), ("weight_ce", 1.0), ("weight_kd", 0.9), ("weight_ss", 10.0), ("weight_tf", 2.7),
            ("temperature_kd", 4.0), ("temperature_ss", 0.5), ("temperature_tf", 4.0), ("ratio_ss", 0.75),
            ("ratio_tf", 1.0))),
         ("phases", [{"name": "teacher_head", "epochs": 30, "terms": {"sskd": 1.0}, "train": ["objective"]}],
          "stage1 num_epochs 30"))),
    Row("tfkd", "tfkd_self", "resnet18", "rrpr2020/tfkd-resnet18_from_resnet18.yaml", "Tf-KD (self-teacher)",
        ("70.42", "70.52"),
        "the teacher is torchvision's pretrained ResNet-18; 90 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, "
        "batch 256, x0.1 at 30/60/80; KDLoss T 1.0, alpha 0.9 (weight on CE: CE 0.9 + KD 0.1).",
        90, 256, 0.1, 1.0e-4, (30, 60, 80),
        (("terms.ce.weight", 0.9, "KDLoss alpha 0.9 (weight on CE)"), ("terms.kd.weight", 0.1, "KDLoss 1 - alpha"),
         ("terms.kd.temperature", 1.0, "KDLoss temperature 1.0"))),
    Row("reviewkd", "reviewkd", "resnet34", "nlp-oss2023/kr-resnet18_from_resnet34.yaml", "KR (ReviewKD)",
        ("71.61", "71.64"),
        "100 epochs, SGD lr 0.025 momentum 0.9 weight decay 1e-4, batch 32, x0.1 at 30/60/90; CE 1 + one "
        "HierarchicalContextLoss per level (layer1-4 and avgpool, weight 1 each, no warm-up), mid channels 512. "
        "torchdistill taps the inputs of each block's last ReLU (pre-activation); torchvision's shared in-place ReLU "
        "leaves no such tap here, so the stage outputs stand in (see models/torchvision_models.py).",
        100, 32, 0.025, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"),
         ("terms.reviewkd.weight", 1.0, "each level's HCL weight 1.0 (the term sums the levels)"),
         ("terms.reviewkd.stages", [0, 1, 2, 3], "abfs on layer1..layer4 (+ avgpool, always included)"),
         ("terms.reviewkd.warmup_epochs", 0, "no warm-up in torchdistill"))),
    Row("dist", "dist", "resnet34", "torchdistill configs/sample/ilsvrc2012/dist/resnet18_from_resnet34.yaml", "DIST",
        ("72.07", "71.95"),
        "100 epochs, SGD lr 0.1 momentum 0.9 weight decay 1e-4, batch 256, x0.1 at 30/60/90; CE 1 + DISTLoss 2.0 with "
        "beta 1, gamma 1, tau 1.",
        100, 256, 0.1, 1.0e-4, (30, 60, 90),
        (("terms.ce.weight", 1.0, "ce weight 1.0"), ("terms.dist.weight", 2.0, "dist weight 2.0"),
         ("terms.dist.weight_inter", 1.0, "DISTLoss beta 1.0"), ("terms.dist.weight_intra", 1.0, "DISTLoss gamma 1.0"),
         ("terms.dist.temperature", 1.0, "DISTLoss tau 1.0"))),
)


def published_text(row: Row) -> str:
    original, ours = row.published
    return f"Published ({TD_TABLE}): " + (f"original {original}, " if original else "") + f"torchdistill {ours}."


def cell_for(row: Row) -> Cell:
    name = f"torchdistill/{row.method}_{row.teacher}_resnet18"
    source = row.file if row.file.startswith("torchdistill ") else TD + row.file
    header = imagenet_header([
        f"torchdistill (Matsubara, 2021), ImageNet (ILSVRC-2012), {row.title} {TITLES[row.teacher]} -> ResNet-18.",
        published_text(row), f"Recipe ({source}):", row.recipe], row.teacher, name)
    cell = Cell(name, header, torchvision_pair([("kd", row.kd), ("optimizer", "sgd"), ("scheduler", "multistep")]))
    imagenet_common(cell, row.teacher, "resnet18", "torchdistill")
    cell.set("data.batch_size", row.batch, f"{row.file} train_data_loader batch_size")
    cell.set("trainer.max_epochs", row.epochs, f"{row.file} num_epochs")
    sgd(cell, row.lr, row.weight_decay, row.file)
    multistep(cell, list(row.milestones), 0.1, row.file)
    cell.set_rows("kd", row.terms)
    return cell


def build() -> list[Cell]:
    return [cell_for(row) for row in ROWS]
