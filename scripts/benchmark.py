"""Training throughput on one teacher-student pair, batch and data, for student-only training, KD and CRD:
(a) this codebase's Lightning module, (b) a hand-written PyTorch loop doing the same computation, and
(c) torchdistill's DistillationBox / TrainingBox, where its PyPI package is installed:

    pip install torchdistill==1.1.5                               # (c) only; not a project dependency
    python scripts/benchmark.py                                   # resnet32x4 -> resnet8x4, batch 128, CPU
    python scripts/benchmark.py --device cuda --precision bf16-mixed --steps 200 --fast
    python scripts/benchmark.py --methods student,kd --teacher resnet8 --student resnet8 --steps 5   # quick

All sides read the same CIFAR-100-shaped data (random uint8 images made once, normalised per batch in the
same collate function, no worker processes), build the same models from the same seed and run the same
optimizer (SGD, momentum 0.9, weight decay 5e-4). (a) and (b) run the project's own term modules; (c) runs
torchdistill's own: KDLoss (alpha 0.1, T 4: the same CE 0.1 + KD 0.9 objective) and CRDLoss with its
Linear4CRD embeddings and CRDDatasetWrapper negatives (16,384, CE 1 + CRD 0.8), always in fp32.
Each run is its own process, so peak memory (GPU: allocated; CPU: resident set) is that side's alone. The
figure is samples per second over the timed steps (after warm-up steps), the best of `--repeats`
alternating runs of the sides, so drift in the machine's load hits all of them; also the projected time of
one CIFAR-100 epoch (50,000 images) for (a). `--fast` turns on the fast path (channels_last; compile=true
with --compile) for (a) and the identical settings for (b).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CIFAR100_TRAIN = 50_000


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet32x4")
    parser.add_argument("--student", default="resnet8x4")
    parser.add_argument("--methods", default="student,kd,crd", help="comma-separated: student, kd, crd")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="32", choices=["32", "bf16-mixed"])
    parser.add_argument("--fast", action="store_true", help="channels_last (and --compile) on both sides")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--sides", default="lightning,loop,torchdistill",
                        help="comma-separated: lightning (a), loop (b), torchdistill (c; skipped if not installed)")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one side, one method, in this process
    return parser.parse_args()


def random_cifar100(count: int):
    """(images uint8 (N, 3, 32, 32), labels): the same data for every side."""
    import torch
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 100, (count,), generator=generator)


def normalise(images):
    """uint8 batch -> normalised float batch (CIFAR-100 statistics), the one data cost every side pays."""
    import torch
    mean = torch.tensor([0.5071, 0.4865, 0.4409]).view(3, 1, 1) * 255
    std = torch.tensor([0.2673, 0.2564, 0.2762]).view(3, 1, 1) * 255
    return images.float().sub_(mean).div_(std)


def images_needed(args) -> int:
    """One batch per warm-up and timed step, plus the one the last tick waits for."""
    return args.batch * (args.warmup + args.steps + 1)


def make_loader(batch: int, count: int):
    """CIFAR-100-shaped batches (x, y, index), as a DataLoader."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    images, labels = random_cifar100(count)

    def collate(rows):
        return (normalise(torch.stack([r[0] for r in rows])), torch.stack([r[1] for r in rows]),
                torch.stack([r[2] for r in rows]))
    return DataLoader(TensorDataset(images, labels, torch.arange(count)), batch_size=batch, shuffle=False,
                      drop_last=True, collate_fn=collate)


def objective_for(method: str):
    """The loss terms of a method, as the project's configs define them (weights included)."""
    from losses import CrossEntropyTerm, DistillationObjective, KDTerm
    from losses.crd import CRDTerm
    if method == "student":
        return DistillationObjective({"ce": CrossEntropyTerm(1.0)})
    if method == "kd":
        return DistillationObjective({"ce": CrossEntropyTerm(0.1), "kd": KDTerm(0.9, 4.0)})
    if method == "crd":
        return DistillationObjective({"ce": CrossEntropyTerm(1.0), "crd": CRDTerm(0.8)})
    raise SystemExit(f"error: unknown method {method}; use student, kd or crd")


class Timer:
    """Samples per second over the steps after warm-up, and the peak memory."""

    def __init__(self, warmup: int, batch: int, device):
        self.warmup, self.batch, self.device, self.steps, self.started = warmup, batch, device, 0, None

    def step(self) -> None:
        import torch
        self.steps += 1
        if self.steps == self.warmup + 1:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            self.started = time.perf_counter()

    def result(self) -> dict:
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - self.started
        timed = self.steps - self.warmup - 1  # the last step() marks the end of the last timed step
        peak = (torch.cuda.max_memory_allocated() if self.device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        return {"samples_per_s": timed * self.batch / elapsed, "peak_memory_mb": peak / 2**20}


def build_models(args, method: str, example):
    """Teacher and student as both sides use them: same seed, same weights, same term modules."""
    import torch
    from models import build_model
    from models.teachers import FrozenTeacher
    from tasks.distillation import DistillationTask
    torch.manual_seed(0)
    teacher = FrozenTeacher(build_model(args.teacher, 100))
    student = build_model(args.student, 100)
    objective = objective_for(method)
    # CRD's memory holds a CIFAR-100-sized training set: the loader's images with their labels, then others
    train_labels = torch.arange(CIFAR100_TRAIN) % 100
    train_labels[: images_needed(args)] = random_cifar100(images_needed(args))[1]
    # the task probes shapes and sets up the terms (CRD's embeddings and memory) for both sides
    task = DistillationTask(student, teacher, objective, 100, lambda p: torch.optim.SGD(p, lr=0.05),
                            example_input=example, num_train=CIFAR100_TRAIN, train_labels=train_labels,
                            channels_last=args.fast)
    return task


def optimizer_for(parameters, device):
    import torch
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=5e-4, **fused)


def run_lightning(args, method: str, trained: dict | None = None) -> dict:
    """(a). `trained`, if given, receives the student's final state (to check the sides compute the same)."""
    import pytorch_lightning as pl
    import torch
    from runs.training import compile_in_place
    loader = make_loader(args.batch, images_needed(args))
    example = next(iter(loader))[0][:2]
    task = build_models(args, method, example)
    if method == "student":  # training from scratch: the classification task, no teacher at all
        from tasks.classification import ClassificationTask
        task = ClassificationTask(task.model, 100, None, channels_last=args.fast)
    task.optimizer_factory = lambda parameters: optimizer_for(parameters, torch.device(args.device))
    if args.compile:
        for model in (task.model, *getattr(getattr(task, "teacher", None), "members", [])):
            compile_in_place(model, True)
    timer = Timer(args.warmup, args.batch, torch.device(args.device))

    class Tick(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            timer.step()

        def on_train_end(self, trainer, pl_module):
            timer.step()

    trainer = pl.Trainer(accelerator="gpu" if args.device == "cuda" else "cpu", devices=1,
                         precision=args.precision, max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                         num_sanity_val_steps=0, callbacks=[Tick()])
    trainer.fit(task, train_dataloaders=loader)
    if trained is not None:
        trained.update(task.model.state_dict())
    return timer.result()


def run_loop(args, method: str, trained: dict | None = None) -> dict:
    """The hand-written loop: the same step as DistillationTask.training_step, without the framework."""
    import torch
    from losses import DistillBatch
    from runs.training import compile_in_place
    from tasks.classification import seed_training_step
    device = torch.device(args.device)
    loader = make_loader(args.batch, images_needed(args))
    example = next(iter(loader))[0][:2]
    task = build_models(args, method, example)  # the same models and terms; only their modules are used
    student, teacher, objective = task.model.to(device), task.teacher.to(device), task.objective.to(device)
    if args.fast:
        student.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    if args.compile:
        for model in (student, *teacher.members):
            compile_in_place(model, True)
    optimizer = optimizer_for([*student.parameters(), *objective.parameters()], device)
    student.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    timer = Timer(args.warmup, args.batch, device)
    for step, (x, y, index) in enumerate(loader):
        timer.step()
        seed_training_step(task.seed, step)  # as the task does at each step
        x, y, index = x.to(device, non_blocking=True), y.to(device, non_blocking=True), index.to(device)
        if args.fast:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast:
            student_logits = student(x)
            if method == "student":
                loss = torch.nn.functional.cross_entropy(student_logits, y)
            else:
                teacher_logits, teacher_features = teacher(x, index)
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


def torchdistill_config(args, method: str, teacher, student) -> dict:
    """torchdistill's train config for the method, as its official configs write it (keys of v1.x)."""
    import torch
    loader = {"dataset_id": "train", "sampler": {"class_or_func": torch.utils.data.SequentialSampler, "kwargs": {}},
              "kwargs": {"batch_size": args.batch, "num_workers": 0, "drop_last": True},
              "collate_fn": "benchmark_normalise_collate"}
    optimizer = {"key": "SGD", "kwargs": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}}
    cross_entropy = {"criterion": {"key": "CrossEntropyLoss", "kwargs": {"reduction": "mean"}},
                     "criterion_wrapper": {"key": "SimpleLossWrapper", "kwargs": {
                         "input": {"is_from_teacher": False, "module_path": ".", "io": "output"},
                         "target": {"uses_label": True}}},
                     "weight": 1.0}
    config = {"num_epochs": 1, "train_data_loader": loader, "optimizer": optimizer}
    if method == "student":
        config["model"] = {"forward_proc": "forward_batch_only"}
        config["criterion"] = {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"ce": cross_entropy}}}
    elif method == "kd":
        config["teacher"] = {"forward_proc": "forward_batch_only", "requires_grad": False}
        config["student"] = {"forward_proc": "forward_batch_only"}
        kd = {"criterion": {"key": "KDLoss", "kwargs": {
            "student_module_path": ".", "student_module_io": "output", "teacher_module_path": ".",
            "teacher_module_io": "output", "temperature": 4.0, "alpha": 0.1, "reduction": "batchmean"}},
              "weight": 1.0}
        config["criterion"] = {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"kd": kd}}}
    elif method == "crd":
        loader["dataset_wrapper"] = {"key": "CRDDatasetWrapper", "kwargs": {
            "num_negative_samples": 16384, "mode": "exact", "ratio": 1.0}}

        def side(model, hooked_inputs):
            return {"forward_proc": "forward_batch_supp_dict",
                    "auxiliary_model_wrapper": {"key": "Linear4CRD", "kwargs": {
                        "input_module_path": "model.pool", "power": 2, "linear_kwargs": {
                            "in_features": model.fc.in_features, "out_features": 128, "bias": True}}},
                    "forward_hook": {"input": hooked_inputs, "output": ["model.pool", "normalizer"]},
                    "requires_grad": True, "frozen_modules": ["model"] if model is teacher else []}
        config["teacher"], config["student"] = side(teacher, []), side(student, ["empty"])
        crd = {"criterion": {"key": "CRDLoss", "kwargs": {
            "teacher_norm_module_path": "normalizer", "student_norm_module_path": "normalizer",
            "student_empty_module_path": "empty", "input_size": 128, "output_size": CIFAR100_TRAIN,
            "num_negative_samples": 16384, "num_samples": CIFAR100_TRAIN, "temperature": 0.07,
            "momentum": 0.5, "eps": 1e-7}}, "weight": 0.8}
        config["criterion"] = {"key": "WeightedSumLoss", "kwargs": {"sub_terms": {"ce": cross_entropy, "crd": crd}}}
    return config


def run_torchdistill(args, method: str, trained: dict | None = None) -> dict:
    """(c): torchdistill's boxes, driven the way its example scripts drive them (one epoch's loop)."""
    import logging
    import torch
    from torch.utils.data import Dataset
    from torchdistill.core.distillation import get_distillation_box
    from torchdistill.core.training import get_training_box
    from torchdistill.datasets.registry import register_collate_func
    from models import build_model
    logging.getLogger().setLevel(logging.WARNING)  # torchdistill logs on the root logger
    device = torch.device(args.device)

    class RandomCifar100(Dataset):  # CRDDatasetWrapper reads `classes` and `targets`
        def __init__(self, count):
            self.images, labels = random_cifar100(count)
            self.targets, self.classes = labels.tolist(), list(range(100))

        def __len__(self):
            return len(self.targets)

        def __getitem__(self, index):
            return self.images[index], self.targets[index]

    @register_collate_func(key="benchmark_normalise_collate")
    def collate(rows):
        supp = torch.utils.data.default_collate([r[2] for r in rows])
        return normalise(torch.stack([r[0] for r in rows])), torch.tensor([r[1] for r in rows]), supp

    torch.manual_seed(0)  # the same weights as (a) and (b): teacher first, then student
    teacher, student = build_model(args.teacher, 100), build_model(args.student, 100)
    teacher.eval()
    datasets = {"train": RandomCifar100(images_needed(args))}
    config = torchdistill_config(args, method, teacher, student)
    if method == "student":
        box = get_training_box(student.to(device), datasets, config, device, None, False, 1.0)
    else:
        box = get_distillation_box(teacher.to(device), student.to(device), datasets, config, device, None, False, 1.0)
    box.criterion.to(device)
    timer = Timer(args.warmup, args.batch, device)
    box.pre_epoch_process(epoch=0)
    for x, y, supp in box.train_data_loader:
        timer.step()
        supp = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in supp.items()}
        loss = box.forward_process(x.to(device, non_blocking=True), y.to(device, non_blocking=True), supp)
        box.post_forward_process(loss=loss)
    timer.step()
    if trained is not None:
        trained.update(student.state_dict())
    return timer.result()


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


def main() -> None:
    args = arguments()
    if args.worker:
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        import logging
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
        Path(args.json).write_text(json.dumps(SIDES[args.worker](args, args.methods)))
        return
    sides = available_sides(args)
    rows = []
    for method in args.methods.split(","):
        best = {side: None for side in sides}
        for _ in range(args.repeats):  # alternate, so that a change in the machine's load hits every side
            for side in sides:
                result = run_in_subprocess(side, method)
                if best[side] is None or result["samples_per_s"] > best[side]["samples_per_s"]:
                    best[side] = result
        row = {"method": method}
        for side, result in best.items():
            row[f"{side}_samples_per_s"], row[f"{side}_peak_mb"] = result["samples_per_s"], result["peak_memory_mb"]
        for side in ("loop", "torchdistill"):
            if "lightning" in best and side in best:
                row[f"ratio_a_over_{side}"] = best["lightning"]["samples_per_s"] / best[side]["samples_per_s"]
        if "lightning" in best:
            row["cifar100_epoch_s"] = CIFAR100_TRAIN / best["lightning"]["samples_per_s"]
        rows.append(row)
    import torch
    threads = args.threads or torch.get_num_threads()
    setting = (f"{args.teacher} -> {args.student}, batch {args.batch}, {args.device}, precision {args.precision}"
               f"{', fast path' if args.fast else ''}{', compiled' if args.compile else ''}, torch threads "
               f"{threads}, {args.steps} timed steps after {args.warmup}, best of {args.repeats}")
    print(f"\n{setting}\n")
    print(markdown_table(rows, sides))
    if args.json:
        Path(args.json).write_text(json.dumps({"setting": setting, "command": " ".join(sys.argv), "rows": rows},
                                              indent=2))


SIDE_NAMES = {"lightning": "(a) Lightning", "loop": "(b) plain loop", "torchdistill": "(c) torchdistill"}
SIDE_LETTERS = {"lightning": "(a)", "loop": "(b)", "torchdistill": "(c)"}


def markdown_table(rows: list[dict], sides: list[str]) -> str:
    has_a = "lightning" in sides
    ratios = [s for s in ("loop", "torchdistill") if s in sides and has_a]
    header = (["method"] + [f"{SIDE_NAMES[s]} img/s" for s in sides] + [f"(a)/{SIDE_LETTERS[s]}" for s in ratios]
              + [f"peak MB {'/'.join(SIDE_LETTERS[s] for s in sides)}"] + (["CIFAR-100 epoch (a)"] if has_a else []))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = ([r["method"]] + [f"{r[f'{s}_samples_per_s']:.1f}" for s in sides]
                 + [f"{r[f'ratio_a_over_{s}']:.3f}" for s in ratios]
                 + [" / ".join(f"{r[f'{s}_peak_mb']:.0f}" for s in sides)]
                 + ([f"{r['cifar100_epoch_s']:.0f} s"] if has_a else []))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

if __name__ == "__main__":
    main()
