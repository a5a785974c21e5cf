"""zkxufo/TTM (Zheng and Yang, ICLR 2024, "Knowledge Distillation Based on Transformed Teacher Matching"): the TTM and
WTTM rows of its README's two CIFAR-100 tables (RepDistiller's pairs, recipe and released teachers).

The README publishes the accuracies; the per-pair exponent gamma and weight beta are in the paper's appendix A.4,
not in the repository. The cells run cfg/kd/ttm.yaml and cfg/kd/wttm.yaml's settings (the README's examples) for
every pair, and say so: set kd.terms.ttm.exponent / weight from the paper to run its exact setting."""
from __future__ import annotations

from scripts.experiments.cells import FP32_LINE, Cell, Published, kd_defaults, publish
from scripts.experiments.repdistiller import RD_CROSS, RD_SAME, cifar100_recipe, rd_name, teacher_lines

TTM_SOURCE = "zkxufo/TTM train_student.py"
TTM_README = "zkxufo/TTM README.md"
# README.md tables, columns in RepDistiller's order (same-architecture, then cross-architecture pairs).
TTM_RESULTS = {
    "ttm": [76.23, 74.32, 71.83, 71.46, 73.97, 76.17, 74.33, 68.98, 69.24, 74.87, 74.18, 76.57, 75.39],
    "wttm": [76.37, 74.58, 71.92, 71.67, 74.13, 76.06, 74.44, 69.16, 69.59, 74.82, 74.37, 76.55, 75.42],
}
# README.md "Running": the only settings it gives (train_student.py flags), which cfg/kd/<method>.yaml holds.
TTM_EXAMPLES = {"ttm": ("--distill ttm --ttm_l 0.1 -r 1 -b 45 -a 0", 0.1, 45.0, "for vgg13 -> vgg8"),
                "wttm": ("--add wttm --ttm_l 0.2 -a 4", 0.2, 4.0, "beside CRD (-b 0.8)")}


def cell_for(method: str, teacher: str, student: str, published: float) -> Cell:
    flags, exponent, weight, where = TTM_EXAMPLES[method]
    terms = kd_defaults(method)["terms"]
    if (terms["ttm"]["exponent"], terms["ttm"]["weight"], terms["ce"]["weight"]) != (exponent, weight, 1.0):
        raise RuntimeError(f"cfg/kd/{method}.yaml no longer holds {TTM_README}'s example ({flags})")
    name = f"ttm/{method}_{teacher}_{student}"
    title = method.upper()
    t_acc, s_acc = {**RD_SAME, **RD_CROSS}[teacher, student]
    header = [
        f"zkxufo/TTM (Zheng and Yang, ICLR 2024, \"Knowledge Distillation Based on Transformed Teacher Matching\"),",
        f"CIFAR-100, {title} {rd_name(teacher)} -> {rd_name(student)}. Published ({TTM_README}, CIFAR-100 tables;",
        f"the paper: mean of 5 runs; the README does not say which epoch): {title} {published:.2f}; teacher {t_acc:.2f},",
        f"student from scratch {s_acc:.2f}. Recipe ({TTM_SOURCE}, RepDistiller's): 240 epochs, SGD momentum 0.9,",
        "weight decay 5e-4, batch 64, x0.1 at epochs 150/180/210, lr 0.05 (0.01 for MobileNetV2/ShuffleNet); CE 1",
        f"(-r 1). Loss settings: the paper's appendix A.4 gives gamma (--ttm_l) and beta (-b) per pair and the",
        f"repository does not; this cell runs the README's {title} example ({flags}, {where}): exponent {exponent:g},",
        f"weight {weight:g}. Set kd.terms.ttm.exponent and kd.terms.ttm.weight to the paper's values for this pair.",
        FP32_LINE, *teacher_lines(teacher),
        f"  python distill_train.py experiment={name} trainer=gpu",
    ]
    cell = Cell(name, header, [("data", "cifar100"), ("student", student), ("teacher/model", teacher), ("kd", method),
                               ("optimizer", "sgd"), ("scheduler", "multistep")])
    cifar100_recipe(cell, TTM_SOURCE, student, "RepDistiller train_teacher.py: lr 0.05 (TTM uses its teachers)")
    cell.set("kd.terms.ce.weight", 1.0, f"{TTM_SOURCE} -r 1")
    cell.set("kd.terms.ttm.weight", weight, f"{TTM_README} example ({flags}); the paper's A.4 has this pair's beta")
    cell.set("kd.terms.ttm.exponent", exponent, f"{TTM_README} example --ttm_l; the paper's A.4 has this pair's gamma")
    cell.set("kd.terms.ttm.sample_weighted", method == "wttm", f"{TTM_SOURCE} --distill {method}")
    publish(cell, Published(published, f"{TTM_README}, CIFAR-100 {'same' if (teacher, student) in RD_SAME else 'different'}"
                                       "-architecture table", teacher=t_acc))
    return cell


def build() -> list[Cell]:
    columns = [*RD_SAME, *RD_CROSS]
    return [cell_for(method, teacher, student, published)
            for method, results in TTM_RESULTS.items() for (teacher, student), published in zip(columns, results)]
