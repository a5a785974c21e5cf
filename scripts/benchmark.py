"""Training throughput: this codebase's Lightning module against a hand-written PyTorch loop doing the same
computation, on one teacher-student pair, batch and data, for student-only training, KD and CRD.

    python scripts/benchmark.py                                   # resnet32x4 -> resnet8x4, batch 128, CPU
    python scripts/benchmark.py --device cuda --precision bf16-mixed --steps 200 --fast
    python scripts/benchmark.py --methods student,kd --teacher resnet8 --student resnet8 --steps 5   # quick

Both sides read the same CIFAR-100-shaped batches (random uint8 images made once, normalised on the fly by
the same DataLoader), build the same models from the same seed, run the same optimizer (SGD, momentum 0.9,
weight decay 5e-4) and the same loss terms (the project's own term modules in both). The figure is samples
per second over the timed steps (after warm-up steps), the best of `--repeats` alternating runs of (a) and
(b), so drift in the machine's load hits both; also the peak memory and the projected time of one
CIFAR-100 epoch (50,000 images). `--fast` turns on the fast path (channels_last; compile=true with
--compile) for the Lightning side and the identical settings for the loop.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

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
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    return parser.parse_args()


def make_loader(batch: int, count: int):
    """CIFAR-100-shaped batches (x, y, index): random uint8 images normalised per batch, as a DataLoader."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 100, (count,), generator=generator)
    mean = torch.tensor([0.5071, 0.4865, 0.4409]).view(3, 1, 1) * 255
    std = torch.tensor([0.2673, 0.2564, 0.2762]).view(3, 1, 1) * 255

    def collate(rows):
        x = torch.stack([r[0] for r in rows]).float().sub_(mean).div_(std)
        return x, torch.stack([r[1] for r in rows]), torch.stack([r[2] for r in rows])
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
    # the task probes shapes and sets up the terms (CRD's embeddings and memory) for both sides
    task = DistillationTask(student, teacher, objective, 100, lambda p: torch.optim.SGD(p, lr=0.05),
                            example_input=example, num_train=CIFAR100_TRAIN,
                            channels_last=args.fast)
    return task


def optimizer_for(parameters, device):
    import torch
    fused = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.SGD(parameters, lr=0.05, momentum=0.9, weight_decay=5e-4, **fused)


def run_lightning(args, method: str) -> dict:
    import pytorch_lightning as pl
    import torch
    from tasks.runs import compile_in_place
    loader = make_loader(args.batch, args.batch * (args.warmup + args.steps + 1))
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
    return timer.result()


def run_loop(args, method: str) -> dict:
    """The hand-written loop: the same step as DistillationTask.training_step, without the framework."""
    import torch
    from losses import DistillBatch
    from tasks.runs import compile_in_place
    device = torch.device(args.device)
    loader = make_loader(args.batch, args.batch * (args.warmup + args.steps + 1))
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
    for x, y, index in loader:
        timer.step()
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
    return timer.result()


def main() -> None:
    args = arguments()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    import logging
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    rows = []
    for method in args.methods.split(","):
        best = {"lightning": None, "loop": None}
        for _ in range(args.repeats):  # alternate, so that a change in the machine's load hits both
            for side, run in (("lightning", run_lightning), ("loop", run_loop)):
                result = run(args, method)
                if best[side] is None or result["samples_per_s"] > best[side]["samples_per_s"]:
                    best[side] = result
        a, b = best["lightning"], best["loop"]
        rows.append({"method": method, "lightning_samples_per_s": a["samples_per_s"],
                     "loop_samples_per_s": b["samples_per_s"], "ratio_a_over_b": a["samples_per_s"] / b["samples_per_s"],
                     "lightning_peak_mb": a["peak_memory_mb"], "loop_peak_mb": b["peak_memory_mb"],
                     "cifar100_epoch_s": CIFAR100_TRAIN / a["samples_per_s"]})
    setting = (f"{args.teacher} -> {args.student}, batch {args.batch}, {args.device}, precision {args.precision}"
               f"{', fast path' if args.fast else ''}{', compiled' if args.compile else ''}, torch threads "
               f"{torch.get_num_threads()}, {args.steps} timed steps after {args.warmup}, best of {args.repeats}")
    print(f"\n{setting}\n")
    print("| method | (a) Lightning img/s | (b) plain loop img/s | (a)/(b) | peak MB (a / b) | CIFAR-100 epoch (a) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['lightning_samples_per_s']:.1f} | {r['loop_samples_per_s']:.1f} | "
              f"{r['ratio_a_over_b']:.3f} | {r['lightning_peak_mb']:.0f} / {r['loop_peak_mb']:.0f} | "
              f"{r['cifar100_epoch_s']:.0f} s |")
    if args.json:
        Path(args.json).write_text(json.dumps({"setting": setting, "command": " ".join(sys.argv), "rows": rows},
                                              indent=2))


if __name__ == "__main__":
    main()
