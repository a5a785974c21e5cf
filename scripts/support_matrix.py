"""Run every distillation method on every teacher-student pair of RepDistiller's two CIFAR-100 tables for
one training step (random weights, random CIFAR-shaped data, CPU) and write the support matrix.

    python scripts/support_matrix.py [--methods kd crd ...] [--out results/support_matrix.md] [--readme]

A cell is "ok" when the step runs and gives a finite loss with gradients; otherwise it holds the reason.
With --readme the table also replaces the block between the support-matrix markers in README.md.
"""
from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

import torch
from omegaconf import OmegaConf

from errors import find_user_error
from models import build_model
from models.teachers import FrozenTeacher
from tasks.distillation import DistillationTask
from runs.class_means import bind_class_means
from runs.training import instantiate
from losses import DistillationObjective
from tasks.phases import parse_phases

# RepDistiller README, CIFAR-100: same-family pairs, then cross-family pairs (teacher, student).
PAIRS = [("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet110", "resnet20"),
         ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"),
         ("vgg13", "mobilenetv2"), ("resnet50_cifar", "mobilenetv2"), ("resnet50_cifar", "vgg8"),
         ("resnet32x4", "shufflenetv1"), ("resnet32x4", "shufflenetv2"), ("wrn_40_2", "shufflenetv1")]
BEGIN, END = "<!-- support-matrix:begin -->", "<!-- support-matrix:end -->"


def one_step(method: str, teacher_name: str, student_name: str, batch_size: int = 4) -> str:
    torch.manual_seed(0)
    kd = OmegaConf.load(ROOT / "cfg" / "kd" / f"{method}.yaml")
    try:
        objective = DistillationObjective({name: instantiate(node) for name, node in kd.terms.items() if node})
        parse_phases(kd, objective.terms)
        teacher = FrozenTeacher(build_model(teacher_name, 100))
        student = build_model(student_name, 100)
        x = torch.randn(batch_size, 3, 32, 32)
        bind_class_means(objective, teacher.model, [(x, torch.arange(batch_size))], 100)  # KD++'s class centres
        task = DistillationTask(student, teacher, objective, 100, torch.optim.SGD, example_input=x[:2], num_train=64,
                                train_labels=torch.arange(64) % 100)
        task.train()
        loss = task.training_step((x, torch.randint(100, (batch_size,)), torch.arange(batch_size)), 0)
        loss.backward()
    except Exception as error:  # noqa: BLE001 - the reason goes into the matrix
        reason = find_user_error(error) or error
        # The message up to its details in parentheses, so one reason covers every pair it applies to.
        return f"{type(reason).__name__}: {str(reason).splitlines()[0].split(' (')[0][:100]}"
    if not math.isfinite(loss.item()):
        return "non-finite loss"
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()):
        return "no gradient reaches the student"
    return "ok"


def markdown(methods: list[str], cells: dict) -> str:
    header = "| method | " + " | ".join(f"{t} → {s}" for t, s in PAIRS) + " |"
    rule = "|---|" + "---|" * len(PAIRS)
    lines = [header, rule]
    reasons = {}
    for method in methods:
        row = []
        for pair in PAIRS:
            cell = cells[method, pair]
            if cell == "ok":
                row.append("✓")
            else:
                mark = reasons.setdefault(cell, f"({len(reasons) + 1})")
                row.append(f"✗ {mark}")
        lines.append(f"| `{method}` | " + " | ".join(row) + " |")
    lines += [""] + [f"{mark} {reason}" for reason, mark in reasons.items()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=sorted(p.stem for p in (ROOT / "cfg" / "kd").glob("*.yaml")))
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "support_matrix.md")
    parser.add_argument("--readme", action="store_true", help="also update README.md")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*self.log.*")  # steps run outside a Trainer on purpose
    started = time.time()
    cells = {}
    for method in args.methods:
        for teacher, student in PAIRS:
            cells[method, (teacher, student)] = one_step(method, teacher, student)
        print(f"{method}: {sum(cells[method, p] == 'ok' for p in PAIRS)}/{len(PAIRS)} pairs", flush=True)
    table = markdown(args.methods, cells)
    note = (f"One training step per cell (batch 4, random weights and data, CPU), made by "
            f"`python scripts/support_matrix.py{' --readme' if args.readme else ''}` in {time.time() - started:.0f} s.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table + "\n\n" + note + "\n")
    if args.readme:
        readme = (ROOT / "README.md").read_text()
        start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
        (ROOT / "README.md").write_text(readme[:start] + "\n" + table + "\n\n" + note + "\n" + readme[end:])
    print(table)


if __name__ == "__main__":
    main()
