"""Training throughput on one teacher-student pair, batch and data, for student-only training, KD and CRD:
(a) this codebase's Lightning module, (b) a hand-written PyTorch loop doing the same computation, and
(c) torchdistill's DistillationBox / TrainingBox (scripts/benchmark_torchdistill.py), where its PyPI package
is installed:

    pip install torchdistill==1.1.5                               # (c) only; not a project dependency
    python scripts/benchmark.py                                   # resnet32x4 -> resnet8x4, batch 128, CPU
    python scripts/benchmark.py --device cuda --precision bf16-mixed --fast --compile --steps 200 --profile-steps 20
    python scripts/benchmark.py --methods student,kd --teacher resnet8 --student resnet8 --steps 5   # quick

All sides read the same CIFAR-100-shaped data (random uint8 images made once, normalised per batch in the
same collate function, no worker processes), build the same models from the same seed and run the same
optimizer (SGD, momentum 0.9, weight decay 5e-4). (a) and (b) run the project's own term modules; (c) runs
torchdistill's own, always in fp32. Each run is its own process, so peak memory (GPU: allocated; CPU:
resident set) is that side's alone, and every process keeps the memory it frees (keep_freed_memory: with
glibc's defaults each CPU step page-faults its large buffers back in, 1e5+ faults, a cost that varies from
process to process by more than the gap between the sides). The figure is samples per second over the timed
steps (after warm-up steps), the median of `--repeats` interleaved runs of the sides (the order reversed every
other round), so drift in the machine's load hits all of them; also CPU seconds and page faults per step, and
the projected time of one CIFAR-100 epoch (50,000 images) for (a). On CUDA, `--profile-steps N` profiles N
more steps for the GPU's busy fraction (scripts/benchmark_timing.py).

`--fast` turns on the fast path, identically for (a) and (b): channels_last models and inputs, device-resident
data (the uint8 set on the device, each batch normalised there: `data.device_resident=true`'s BatchTransform),
and, for methods whose teacher outputs cannot change (KD on this unaugmented data), the teacher's logits
computed once and looked up (`teacher=cached`'s CachedTeacher); `--compile` adds torch.compile and
`--precision bf16-mixed` mixed precision.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from scripts.benchmark_inputs import (CIFAR100_MEAN, CIFAR100_STD, CIFAR100_TRAIN, CRD_NEGATIVES, images_needed,
                                      normalise, random_cifar100)
from scripts.benchmark_timing import Timer, tick_callback


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--methods", default="student,kd,crd", help="comma-separated: student, kd, crd")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=0,
                        help="CUDA only: this many further steps under the profiler, for the GPU's busy fraction")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--fast", action="store_true",
                        help="the fast path on (a) and (b): channels_last, device-resident data, cached teacher (KD)")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--sides", default="lightning,loop,torchdistill",
                        help="comma-separated: lightning (a), loop (b), torchdistill (c; skipped if not installed)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc returning freed memory to the system (see keep_freed_memory)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one side, one method, in this process
    return parser.parse_args(argv)


def keep_freed_memory() -> bool:
    """glibc malloc: serve every allocation from the heap (no mmap) and never hand freed memory back to the
    system, so a step's large buffers (activations, gradients) are reused by the next step instead of being
    unmapped and page-faulted back in, fresh and zero-filled (1e5+ faults per step here). The same for every
    side; returns False where the C library is not glibc (nothing changed)."""
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # malloc.h
    return bool(mallopt(m_mmap_max, 0)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def make_loader(args):
    """CIFAR-100-shaped batches (x, y, index): a DataLoader normalising on the CPU, or under --fast batches cut
    from the set held on args.device and normalised there (what data.device_resident=true does)."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    count = images_needed(args)
    images, labels = random_cifar100(count)
    if args.fast:
        from datamodules.device_data import BatchTransform, DeviceBatches, ResidentTensors
        transform = BatchTransform(to_unit=True, mean=CIFAR100_MEAN, std=CIFAR100_STD)
        return DeviceBatches(ResidentTensors(images, labels), torch.arange(count), args.batch, transform,
                             device=torch.device(args.device))

    def collate(rows):
        return (normalise(torch.stack([r[0] for r in rows])), torch.stack([r[1] for r in rows]),
                torch.stack([r[2] for r in rows]))
    return DataLoader(TensorDataset(images, labels, torch.arange(count)), batch_size=args.batch, shuffle=False,
                      drop_last=True, collate_fn=collate)


def objective_for(method: str, crd_negatives: int = CRD_NEGATIVES):
    """The loss terms of a method, as the project's configs define them (weights included; CRD's negatives
    fewer only where a quick check asks)."""
    from losses import CrossEntropyTerm, DistillationObjective, KDTerm
    from losses.crd import CRDTerm
    if method == "student":
        return DistillationObjective({"ce": CrossEntropyTerm(1.0)})
    if method == "kd":
        return DistillationObjective({"ce": CrossEntropyTerm(0.1), "kd": KDTerm(0.9, 4.0)})
    if method == "crd":
        return DistillationObjective({"ce": CrossEntropyTerm(1.0), "crd": CRDTerm(0.8, num_negatives=crd_negatives)})
    raise SystemExit(f"error: unknown method {method}; use student, kd or crd")


def caches_teacher(args, objective) -> bool:
    """Whether the fast path looks the teacher's logits up: its outputs on this unaugmented data are fixed
    unless a term reads teacher features or makes its own batch (runs.training.teacher_outputs_are_fixed)."""
    from types import SimpleNamespace
    from runs.training import teacher_outputs_are_fixed
    return args.fast and teacher_outputs_are_fixed(SimpleNamespace(augments=False), objective, None)


def cached_teacher(teacher, loader, device):
    """`teacher` answering from a table of its fp32 logits on every example of `loader`, made on `device`."""
    import torch
    from models.teachers import CachedTeacher
    teacher.to(device)
    table = torch.full((len(loader) * loader.batch_size, 1, teacher.num_classes), float("nan"), device=device)
    with torch.no_grad():
        for x, _, index in loader:
            table[index, 0] = teacher(x.to(device), index)[0].float()
    return CachedTeacher(teacher, table, cache_calls=len(table))


def build_models(args, method: str, loader):
    """Teacher and student as both sides use them: same seed, same weights, same term modules, set up in a
    DistillationTask (whose probe gives CRD its embeddings and memory); under --fast a cached teacher where it
    applies."""
    import torch
    from models import build_model
    from models.teachers import FrozenTeacher
    from tasks.distillation import DistillationTask
    torch.manual_seed(0)
    teacher = FrozenTeacher(build_model(args.teacher, 100))
    student = build_model(args.student, 100)
    objective = objective_for(method, getattr(args, "crd_negatives", CRD_NEGATIVES))
    if caches_teacher(args, objective):
        teacher = cached_teacher(teacher, loader, torch.device(args.device))
    example = next(iter(loader))[0][:2].to("cpu")
    teacher.to("cpu")
    # CRD's memory holds a CIFAR-100-sized training set: the loader's images with their labels, then others
    train_labels = torch.arange(CIFAR100_TRAIN) % 100
    train_labels[: images_needed(args)] = random_cifar100(images_needed(args))[1]
    # the task probes shapes and sets up the terms (CRD's embeddings and memory) for both sides
    return DistillationTask(student, teacher, objective, 100, lambda p: torch.optim.SGD(p, lr=0.05),
                            example_input=example, num_train=CIFAR100_TRAIN, train_labels=train_labels,
                            channels_last=args.fast)


def optimizer_for(parameters, device):
    import torch
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=5e-4, **fused)


def compile_models(args, models) -> None:
    """--compile: torch.compile in place, as compile=true does (args.compile may also name a backend)."""
    from runs.training import compile_in_place
    if args.compile:
        for model in models:
            compile_in_place(model, args.compile)


def run_lightning(args, method: str, trained: dict | None = None) -> dict:
    """(a). `trained`, if given, receives the student's final state (to check the sides compute the same)."""
    import pytorch_lightning as pl
    import torch
    loader = make_loader(args)
    task = build_models(args, method, loader)
    if method == "student":  # training from scratch: the classification task, no teacher at all
        from tasks.classification import ClassificationTask
        task = ClassificationTask(task.model, 100, None, channels_last=args.fast)
    task.optimizer_factory = lambda parameters: optimizer_for(parameters, torch.device(args.device))
    compile_models(args, [task.model, *(task.teacher.members if method != "student" else [])])
    timer = Timer(args, torch.device(args.device))
    trainer = pl.Trainer(accelerator="gpu" if args.device.startswith("cuda") else "cpu", devices=1,
                         precision=args.precision, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[tick_callback(timer)])
    trainer.fit(task, train_dataloaders=loader)
    if trained is not None:
        trained.update(task.model.state_dict())
    return timer.result()



def run_loop(args, method: str, trained: dict | None = None) -> dict:
    """(b) The hand-written loop: the same step as DistillationTask.training_step, without the framework."""
    import torch
    from losses import DistillBatch
    from tasks.classification import seed_training_step
    device = torch.device(args.device)
    loader = make_loader(args)
    task = build_models(args, method, loader)  # the same models and terms; only their modules are used
    student, teacher, objective = task.model.to(device), task.teacher.to(device), task.objective.to(device)
    if args.fast:
        student.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    compile_models(args, [student, *(teacher.members if method != "student" else [])])
    optimizer = optimizer_for([*student.parameters(), *objective.parameters()], device)
    student.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    timer = Timer(args, device)
    for step, (x, y, index) in enumerate(loader):
        timer.step()
        seed_training_step(task.seed, step)  # as the task does at each step
        x, y, index = x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device)
        if args.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            if method == "student":
                loss = torch.nn.functional.cross_entropy(student(x), y)
            else:
                teacher_logits, teacher_features = teacher(x, index)
                student_logits = student(x)
        if method != "student":
            batch = DistillBatch(inputs=x, targets=y, indices=index, student_logits=student_logits,
                                 teacher_logits=teacher_logits, student_features=task.student_taps.pop(),
                                 teacher_features=teacher_features)
            loss, _ = objective(batch)  # in fp32, as the task computes its terms
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    timer.step()
    if trained is not None:
        trained.update(student.state_dict())
    return timer.result()


def run_torchdistill(args, method: str, trained: dict | None = None) -> dict:
    """(c): scripts/benchmark_torchdistill.py."""
    from scripts.benchmark_torchdistill import run_torchdistill as run
    return run(args, method, trained)


SIDES = {"lightning": run_lightning, "loop": run_loop, "torchdistill": run_torchdistill}


def run_in_subprocess(side: str, method: str) -> dict:
    """One side, one method, in a fresh process: its peak memory is its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--worker", side, "--methods", method,
                        "--json", str(out)], check=True)
        return json.loads(out.read_text())


def available_sides(args) -> list[str]:
    sides = [side.strip() for side in args.sides.split(",")]
    unknown = sorted(set(sides) - set(SIDES))
    if unknown:
        raise SystemExit(f"error: unknown sides {unknown}; use some of {list(SIDES)}")
    if "torchdistill" in sides:
        try:
            import torchdistill  # noqa: F401
        except ImportError:
            print("torchdistill is not installed, so (c) is skipped: pip install torchdistill==1.1.5")
            sides.remove("torchdistill")
    return sides


def summarise(method: str, runs: dict[str, list[dict]]) -> dict:
    """One table row from every side's repeated runs: medians, and the ratios of (a)'s median to the others'."""
    from statistics import median
    row = {"method": method}
    for side, results in runs.items():
        row[f"{side}_samples_per_s"] = median(r["samples_per_s"] for r in results)
        peaks = [r["peak_memory_mb"] for r in results if r.get("peak_memory_mb") is not None]
        row[f"{side}_peak_mb"] = median(peaks) if peaks else None
        for figure_name in ("gpu_busy", "cpu_s_per_step", "page_faults_per_step"):
            values = [r[figure_name] for r in results if r.get(figure_name) is not None]
            row[f"{side}_{figure_name}"] = median(values) if values else None
        row[f"{side}_runs"] = [r["samples_per_s"] for r in results]
    for side in ("loop", "torchdistill"):
        if "lightning" in runs and side in runs:
            row[f"ratio_a_over_{side}"] = row["lightning_samples_per_s"] / row[f"{side}_samples_per_s"]
    if "lightning" in runs:
        row["cifar100_epoch_s"] = CIFAR100_TRAIN / row["lightning_samples_per_s"]
    return row


def main() -> None:
    args = arguments()
    if args.worker:
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        if not args.system_malloc:
            keep_freed_memory()
        import logging
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
        Path(args.json).write_text(json.dumps(SIDES[args.worker](args, args.methods)))
        return
    sides = available_sides(args)
    rows = []
    for method in args.methods.split(","):
        runs = {side: [] for side in sides}
        for repeat in range(args.repeats):  # interleaved, the order reversed every other round: drift in the
            for side in (sides if repeat % 2 == 0 else sides[::-1]):  # machine's load hits every side alike
                runs[side].append(run_in_subprocess(side, method))
                print(f"{method} {SIDE_LETTERS[side]} run {repeat + 1}: {runs[side][-1]['samples_per_s']:.1f} "
                      f"samples/s, {runs[side][-1]['page_faults_per_step']:.0f} page faults per step", flush=True)
        rows.append(summarise(method, runs))
    import torch
    threads = args.threads or torch.get_num_threads()
    setting = (f"{args.teacher} -> {args.student}, batch {args.batch}, {args.device}, precision {args.precision}"
               f"{', fast path' if args.fast else ''}{', compiled' if args.compile else ''}, torch threads "
               f"{threads}, {args.steps} timed steps after {args.warmup}, median of {args.repeats} interleaved runs")
    print(f"\n{setting}\n")
    print(markdown_table(rows, sides))
    if args.json:
        Path(args.json).write_text(json.dumps({"setting": setting, "command": " ".join(sys.argv), "rows": rows},
                                              indent=2))


SIDE_NAMES = {"lightning": "(a) Lightning", "loop": "(b) plain loop", "torchdistill": "(c) torchdistill"}
SIDE_LETTERS = {"lightning": "(a)", "loop": "(b)", "torchdistill": "(c)"}


def figure(value, form: str = "{:.1f}") -> str:
    """A table cell: the formatted number, or "-" where the run gave none (failed, skipped, not applicable)."""
    return "-" if value is None else form.format(value)


def markdown_table(rows: list[dict], sides: list[str]) -> str:
    """Rows of summarise() (with "batch" where rows differ in it) as a Markdown table; GPU busy where measured."""
    has_a = "lightning" in sides
    ratios = [s for s in ("loop", "torchdistill") if s in sides and has_a]
    letters = "/".join(SIDE_LETTERS[s] for s in sides)
    batch = any("batch" in r for r in rows)
    busy = any(r.get(f"{s}_gpu_busy") is not None for r in rows for s in sides)
    header = (["method"] + (["batch"] if batch else []) + [f"{SIDE_NAMES[s]} img/s" for s in sides]
              + [f"(a)/{SIDE_LETTERS[s]}" for s in ratios] + [f"peak MB {letters}"]
              + ([f"GPU busy {letters}"] if busy else []) + (["CIFAR-100 epoch (a)"] if has_a else []))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = ([r["method"]] + ([str(r.get("batch", ""))] if batch else [])
                 + [figure(r.get(f"{s}_samples_per_s")) for s in sides]
                 + [figure(r.get(f"ratio_a_over_{s}"), "{:.3f}") for s in ratios]
                 + [" / ".join(figure(r.get(f"{s}_peak_mb"), "{:.0f}") for s in sides)]
                 + ([" / ".join(figure(r.get(f"{s}_gpu_busy"), "{:.0%}") for s in sides)] if busy else [])
                 + ([figure(r.get("cifar100_epoch_s"), "{:.0f} s")] if has_a else []))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
