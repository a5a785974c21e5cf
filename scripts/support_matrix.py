"""Run every distillation method on the quickstart's pair (mnist1d), the digits pair and every teacher-student pair
of RepDistiller's two CIFAR-100 tables for one training step (random weights, random data of each pair's input
shape, CPU) and write the support matrix.

    python scripts/support_matrix.py [--methods kd crd ...] [--out results/support_matrix.md] [--readme]

A cell is "ok" when the step runs and gives a finite loss with gradients; otherwise it holds the reason. With
--readme the table also replaces the block between the support-matrix markers in README.md; the suite fails while
that block differs from what this script makes (tests/test_support_matrix.py).
"""
from __future__ import annotations

import runs  # noqa: F401 - first, before torch loads: how torch's threads wait (runs/__init__.py)

import argparse
import copy
import functools
import math
import os
import re
import time
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from omegaconf import OmegaConf

from datamodules.two_views import Views
from errors import find_user_error
from losses import DistillationObjective
from models import build_model
from models.teachers import FrozenTeacher
from runs.class_means import bind_class_means
from runs.training import instantiate
from tasks.distillation import DistillationTask
from tasks.phases import parse_phases

ROOT = Path(__file__).resolve().parent.parent


class Pair(NamedTuple):
    teacher: str
    student: str
    input_shape: tuple[int, ...] = (3, 32, 32)
    num_classes: int = 100
    data: str | None = None  # named in the header where the pair is a data set's default

    @property
    def header(self) -> str:
        return f"{self.teacher} → {self.student}" + (f" ({self.data})" if self.data else "")


# The quickstart's and the digits pair (cfg/model/pair/), then RepDistiller's CIFAR-100 pairs: same-family, then
# cross-family (README).
PAIRS = [Pair("cnn1d", "mlp1d", (1, 40), 10, "mnist1d"), Pair("resnet32", "resnet8", (1, 8, 8), 10, "digits"),
         *(Pair(t, s) for t, s in [
             ("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"), ("resnet110", "resnet20"),
             ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"), ("vgg13", "mobilenetv2"),
             ("resnet50_cifar", "mobilenetv2"), ("resnet50_cifar", "vgg8"), ("resnet32x4", "shufflenetv1"),
             ("resnet32x4", "shufflenetv2"), ("wrn_40_2", "shufflenetv1")])]
BEGIN, END = "<!-- support-matrix:begin -->", "<!-- support-matrix:end -->"
NOTE = ("One training step per cell (batch 4, random weights and data of each pair's input shape, CPU), made by "
        "`python scripts/support_matrix.py --readme`.")


def all_methods() -> list[str]:
    return sorted(path.stem for path in (ROOT / "cfg" / "kd").glob("*.yaml"))


@functools.lru_cache(maxsize=None)
def _pristine(name: str, num_classes: int, input_shape: tuple[int, ...]) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(name, num_classes, input_shape)


def fresh_model(name: str, num_classes: int, input_shape: tuple[int, ...]) -> torch.nn.Module:
    """The same random initialisation for every cell, built once per architecture (copies after that)."""
    return copy.deepcopy(_pristine(name, num_classes, input_shape))


def shared_reason(message: str, pair: Pair) -> str:
    """The reason of a refusal without what is particular to the pair (the models' names, shapes in parentheses,
    the advice after ';' or ', but'), so one footnote covers every pair it applies to."""
    reason = re.split(r"; |, but ", message)[0]
    reason = re.sub(r" \([^()]*(\([^()]*\)[^()]*)*\)", "", reason)
    for role in ("student", "teacher"):
        reason = re.sub(rf"\b{re.escape(getattr(pair, role))}\b", f"the {role}", reason)
    return reason


def one_step(method: str, pair: Pair, batch_size: int = 4) -> str:
    torch.manual_seed(0)
    kd = OmegaConf.load(ROOT / "cfg" / "kd" / f"{method}.yaml")
    try:
        objective = DistillationObjective({name: instantiate(node) for name, node in kd.terms.items() if node})
        parse_phases(kd, objective.terms)
        teacher = FrozenTeacher(fresh_model(pair.teacher, pair.num_classes, pair.input_shape))
        student = fresh_model(pair.student, pair.num_classes, pair.input_shape)
        x = torch.randn(batch_size, *pair.input_shape)
        labels = torch.arange(batch_size) % pair.num_classes
        bind_class_means(objective, teacher.model, [(x, labels)], pair.num_classes)  # KD++'s class centres
        task = DistillationTask(student, teacher, objective, pair.num_classes, torch.optim.SGD, example_input=x[:2],
                                num_train=64, train_labels=torch.arange(64) % pair.num_classes)
        task.train()
        # a term that reads a strong augmented view (MLKD) gets one: the same random inputs, perturbed
        inputs = Views(x, x + 0.1 * torch.randn_like(x)) if objective.train_views else x
        loss = task.training_step((inputs, torch.randint(pair.num_classes, (batch_size,)), torch.arange(batch_size)), 0)
        loss.backward()
    except Exception as error:  # noqa: BLE001 - the reason goes into the matrix
        reason = find_user_error(error) or error
        return f"{type(reason).__name__}: {shared_reason(str(reason).splitlines()[0], pair)}"
    if not math.isfinite(loss.item()):
        return "non-finite loss"
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters()):
        return "no gradient reaches the student"
    return "ok"


def method_row(method: str, threads: int | None = None) -> dict[tuple[str, Pair], str]:
    """One method on every pair: "ok" or the reason it cannot run."""
    if threads:
        torch.set_num_threads(threads)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*self.log.*")  # steps run outside a Trainer on purpose
        return {(method, pair): one_step(method, pair) for pair in PAIRS}


def cells(methods: list[str], processes: int = 1) -> dict[tuple[str, Pair], str]:
    """Every method on every pair, the methods shared among `processes` worker processes of one thread each
    (steps of small models use one core each better than two threads do)."""
    if processes <= 1:
        return {key: verdict for method in methods for key, verdict in method_row(method).items()}
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        rows = pool.map(method_row, methods, [1] * len(methods))
        return {key: verdict for row in rows for key, verdict in row.items()}


def markdown(methods: list[str], results: dict) -> str:
    """The matrix and its numbered reasons (a list, so each reason keeps its own line)."""
    lines = ["| method | " + " | ".join(pair.header for pair in PAIRS) + " |", "|---|" + "---|" * len(PAIRS)]
    reasons: dict[str, str] = {}
    for method in methods:
        row = []
        for pair in PAIRS:
            cell = results[method, pair]
            row.append("✓" if cell == "ok" else f"✗ {reasons.setdefault(cell, f'({len(reasons) + 1})')}")
        lines.append(f"| `{method}` | " + " | ".join(row) + " |")
    lines += [""] + [f"- {mark} {reason}" for reason, mark in reasons.items()]
    return "\n".join(lines)


def readme_block(methods: list[str], results: dict) -> str:
    """What README.md holds between the markers."""
    return f"\n{markdown(methods, results)}\n\n{NOTE}\n"


def readme_section(readme: str) -> str:
    return readme[readme.index(BEGIN) + len(BEGIN): readme.index(END)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="*", default=all_methods())
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "support_matrix.md")
    parser.add_argument("--readme", action="store_true", help="also update README.md")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="worker processes (default: cores)")
    args = parser.parse_args()
    started = time.time()
    results = cells(args.methods, args.processes)
    for method in args.methods:
        print(f"{method}: {sum(results[method, p] == 'ok' for p in PAIRS)}/{len(PAIRS)} pairs")
    block = readme_block(args.methods, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(block.lstrip("\n"))
    if args.readme:
        readme = (ROOT / "README.md").read_text()
        (ROOT / "README.md").write_text(readme.replace(readme_section(readme), block, 1))
    print(block)
    print(f"{len(results)} cells in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
