"""Training throughput: (a) this codebase's Lightning module, (b) a hand-written PyTorch loop doing the same
computation, and (c) torchdistill's DistillationBox / TrainingBox (benchmarks/torchdistill_side.py), where its
PyPI package is installed, for student-only training, KD and CRD. Two tables by default:

- pair: the configured teacher-student pair, batch and data (resnet32x4 -> resnet8x4, batch 128): the step's
  arithmetic, which the sides share;
- overhead: the framework's per-step host work, where compute no longer hides it: resnet8 -> resnet8, batch 4,
  one torch thread, 60 timed steps after 10, 3 interleaved runs (OVERHEAD); on a GPU this is the work that
  decides a millisecond step's speed.

    pip install torchdistill==1.1.5                     # (c) only; not a project dependency
    python scripts/benchmark.py                         # both tables, CPU
    python scripts/benchmark.py --tables overhead --json overhead.json
    python scripts/benchmark.py --tables host           # the same sides on MLPs: each side's host work per step
    python scripts/benchmark.py --tables pair --device cuda --precision bf16-mixed --fast --compile --steps 200 \
        --profile-steps 20
    python scripts/benchmark.py --tables pair --methods student,kd --teacher resnet8 --student resnet8 --steps 5
    python scripts/benchmark.py --tables data           # the data paths (benchmarks/data_paths.py)
    python scripts/benchmark.py --tables imagenet       # data=imagenet's decoders (benchmarks/imagenet_decode.py)

All sides read the same CIFAR-100-shaped data (random uint8 images made once, normalised per batch in the
same collate function, no worker processes), build the same models from the same seed and run the same
optimizer (SGD, momentum 0.9, weight decay 5e-4, fused where torch has the kernel, as the task builds a
configured optimizer; torchdistill builds it as its configs say, unfused). (a) and (b) run the project's own term
modules and seed each step alike; (c) runs torchdistill's own, always in fp32. Each run is its own process, so
peak memory (GPU: allocated; CPU: resident set) is that side's alone, and every process keeps the memory it frees
(keep_freed_memory: with glibc's defaults each CPU step page-faults its large buffers back in, 1e5+ faults, a
cost that varies from process to process by more than the gap between the sides). The figure is samples per
second over the timed steps (after warm-up steps), the median of the interleaved runs of the sides (the order
reversed every other round), so drift in the machine's load hits all of them; also per step: the median and
10th-percentile wall time (the low one resists a loaded machine), the process's CPU time (on a GPU: the host's
work) and page faults, and the projected time of one CIFAR-100 epoch (50,000 images) for (a). On CUDA,
`--profile-steps N` profiles N more steps for the GPU's busy fraction (benchmarks/timing.py). The JSON says
what ran where: the command, each table's settings, the machine, its load before and after, the versions.

`--fast` turns on the fast path, identically for (a) and (b): channels_last models and inputs, device-resident
data (the uint8 set on the device, each batch normalised there: `data.device_resident=true`'s BatchTransform),
and, for methods whose teacher outputs cannot change (KD on this unaugmented data), the teacher's logits
computed once and looked up (`teacher=cached`'s CachedTeacher); `--compile` adds torch.compile
(`--compile graphs`: CUDA graphs too, compile=graphs) and `--precision bf16-mixed` mixed precision.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.inputs import (CIFAR100_MEAN, CIFAR100_STD, CIFAR100_TRAIN, CRD_NEGATIVES, images_needed,
                                      normalise, random_cifar100)
from benchmarks.timing import Timer, tick_callback


TABLES = ("pair", "overhead", "host", "data", "imagenet")
# The overhead table: a pair small enough that the step's host work, not its arithmetic, sets the speed.
OVERHEAD = dict(teacher="resnet8", student="resnet8", batch=4, steps=60, warmup=10, threads=1,
                methods="student,kd,crd", precision="32", fast=False, compile=False, profile_steps=0)
# The host table: MLPs (3072-256-256-100) whose step's arithmetic is a fraction of a millisecond, so each side's
# figure is mostly its own host work. Separate processes run the same resnet8 step at speeds up to 40% apart (7.4 to
# 10.6 ms over six bare-loop processes here), more than the sides' host work differs there (about 0.5 ms of 8); here
# that spread shrinks with the arithmetic.
HOST = {**OVERHEAD, "teacher": "mlp", "student": "mlp", "steps": 300, "warmup": 30, "methods": "student,kd"}
PRESETS = {"overhead": OVERHEAD, "host": HOST}


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", default="pair,overhead", help=f"comma-separated, of {', '.join(TABLES)}")
    parser.add_argument("--overhead-repeats", type=int, default=3,
                        help="interleaved runs of the overhead and host tables")
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
    parser.add_argument("--compile", nargs="?", const=True, default=False,
                        help="torch.compile (as compile=true); a value is compile='s: a backend name, or graphs")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--sides", default="lightning,loop,torchdistill",
                        help="comma-separated: lightning (a), loop (b), torchdistill (c; skipped if not installed)")
    parser.add_argument("--system-malloc", action="store_true",
                        help="leave glibc's malloc returning freed memory to the system (see keep_freed_memory)")
    parser.add_argument("--data-dir", default=None, help="data table: a folder holding cifar-10-batches-py "
                                                             "(default: fake data)")
    parser.add_argument("--data-images", type=int, default=10000, help="data table: training images per epoch")
    parser.add_argument("--data-workers", type=int, nargs="+", default=[0, 2],
                        help="data table: DataLoader worker counts (imagenet table: the largest)")
    parser.add_argument("--imagenet-root", default=None, help="imagenet table: an ImageNet-layout folder (default: "
                                                                 "random JPEGs of ImageNet's typical size)")
    parser.add_argument("--imagenet-images", type=int, default=512, help="imagenet table: training images per epoch")
    parser.add_argument("--imagenet-batch", type=int, default=64, help="imagenet table: batch size")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one side, one method, in this process
    parser.add_argument("--worker-args", default=None, help=argparse.SUPPRESS)  # that run's settings, as JSON
    return parser.parse_args(argv)


def overhead_args(args: argparse.Namespace, table: str = "overhead") -> argparse.Namespace:
    """The overhead or host table's settings: its preset over the command line's (device, sides kept; repeats from
    --overhead-repeats)."""
    return argparse.Namespace(**{**vars(args), **PRESETS[table], "repeats": args.overhead_repeats})


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


def sgd():
    """The optimizer of every side: (a) gets it as a configured optimizer (cfg/optimizer/sgd.yaml's partial), which
    the task builds fused where torch has the kernel; (b) builds it the same way."""
    from functools import partial
    import torch
    return partial(torch.optim.SGD, lr=0.05, momentum=0.9, weight_decay=5e-4)


def compile_setting(args):
    """args.compile as runs.training.compile_setting leaves it: graphs (CUDA graphs) only on CUDA, else uncompiled."""
    if args.compile == "graphs" and not args.device.startswith("cuda"):
        print(f"--compile graphs replays CUDA graphs, which need a CUDA device; on {args.device} the models run "
              f"uncompiled", flush=True)
        return False
    return args.compile


def compile_models(args, models):
    """--compile: torch.compile in place, as compile=true does (args.compile may also name a backend, or graphs);
    returns the setting used."""
    from runs.training import compile_in_place
    setting = compile_setting(args)
    if setting:
        for model in models:
            compile_in_place(model, setting)
    return setting


def run_lightning(args, method: str, trained: dict | None = None) -> dict:
    """(a). `trained`, if given, receives the student's final state (to check the sides compute the same)."""
    import pytorch_lightning as pl
    import torch
    loader = make_loader(args)
    task = build_models(args, method, loader)
    if method == "student":  # training from scratch: the classification task, no teacher at all
        from tasks.classification import ClassificationTask
        task = ClassificationTask(task.model, 100, None, channels_last=args.fast)
    task.optimizer_factory = sgd()
    task.marks_graph_steps = compile_models(args, [task.model, *(task.teacher.members if method != "student" else [])]
                                            ) == "graphs"
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
    from tasks.classification import fused_where_possible, seed_training_step
    device = torch.device(args.device)
    loader = make_loader(args)
    task = build_models(args, method, loader)  # the same models and terms; only their modules are used
    student, teacher, objective = task.model.to(device), task.teacher.to(device), task.objective.to(device)
    if args.fast:
        student.to(memory_format=torch.channels_last)
        teacher.to(memory_format=torch.channels_last)
    marks_graph_steps = compile_models(args, [student, *(teacher.members if method != "student" else [])]) == "graphs"
    optimizer = fused_where_possible(sgd(), [*student.parameters(), *objective.parameters()])  # as the task does
    student.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")
    timer = Timer(args, device)
    for step, (x, y, index) in enumerate(loader):
        timer.step()
        seed_training_step(task.seed, step, device=device)  # as the task does at each step
        if marks_graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
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
    """(c): benchmarks/torchdistill_side.py."""
    from benchmarks.torchdistill_side import run_torchdistill as run
    return run(args, method, trained)


SIDES = {"lightning": run_lightning, "loop": run_loop, "torchdistill": run_torchdistill}


def run_in_subprocess(args: argparse.Namespace, side: str, method: str) -> dict:
    """One side, one method, in a fresh process: its peak memory is its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        settings = json.dumps({**vars(args), "methods": method, "json": str(out), "worker": side})
        subprocess.run([sys.executable, "-m", "benchmarks.training", "--worker-args", settings], check=True,
                       cwd=Path(__file__).resolve().parent.parent)
        return json.loads(out.read_text())


def run_worker(args: argparse.Namespace) -> None:
    """This process runs one side on one method (args.worker, args.methods) and writes its figures."""
    import logging
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.system_malloc:
        keep_freed_memory()
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    Path(args.json).write_text(json.dumps(SIDES[args.worker](args, args.methods)))


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
        for figure_name in ("gpu_busy", "cpu_s_per_step", "page_faults_per_step", "step_ms_median", "step_ms_low"):
            values = [r[figure_name] for r in results if r.get(figure_name) is not None]
            row[f"{side}_{figure_name}"] = median(values) if values else None
        row[f"{side}_runs"] = [r["samples_per_s"] for r in results]
    for side in ("loop", "torchdistill"):
        if "lightning" in runs and side in runs:
            row[f"ratio_a_over_{side}"] = row["lightning_samples_per_s"] / row[f"{side}_samples_per_s"]
    if "lightning" in runs:
        row["cifar100_epoch_s"] = CIFAR100_TRAIN / row["lightning_samples_per_s"]
    return row


def side_table(args: argparse.Namespace, sides: list[str]) -> dict:
    """Every method of args on every side, args.repeats interleaved runs each: {"setting", "rows"}."""
    rows = []
    for method in args.methods.split(","):
        runs = {side: [] for side in sides}
        for repeat in range(args.repeats):  # interleaved, the order reversed every other round: drift in the
            for side in (sides if repeat % 2 == 0 else sides[::-1]):  # machine's load hits every side alike
                runs[side].append(run_in_subprocess(args, side, method))
                print(f"{method} {SIDE_LETTERS[side]} run {repeat + 1}: {runs[side][-1]['samples_per_s']:.1f} "
                      f"samples/s, {1000 * runs[side][-1]['cpu_s_per_step']:.2f} CPU ms per step", flush=True)
        rows.append(summarise(method, runs))
    import torch
    threads = args.threads or torch.get_num_threads()
    setting = (f"{args.teacher} -> {args.student}, batch {args.batch}, {args.device}, precision {args.precision}"
               f"{', fast path' if args.fast else ''}{', compiled' if args.compile else ''}"
               f"{' (CUDA graphs)' if args.compile == 'graphs' else ''}, torch threads {threads}, {args.steps} timed "
               f"steps after {args.warmup}, median of {args.repeats} interleaved runs")
    return {"setting": setting, "settings": {k: v for k, v in vars(args).items() if k in SETTING_KEYS}, "rows": rows}


SETTING_KEYS = ("teacher", "student", "methods", "batch", "steps", "warmup", "profile_steps", "repeats", "device",
                "precision", "fast", "compile", "threads", "sides", "system_malloc")


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    if args.worker_args:
        return run_worker(argparse.Namespace(**json.loads(args.worker_args)))
    tables = [t.strip() for t in args.tables.split(",")]
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise SystemExit(f"error: unknown tables {unknown}; use some of {', '.join(TABLES)}")
    report = {"command": " ".join(["python scripts/benchmark.py", *(sys.argv[1:] if argv is None else argv)]),
              "machine": machine(), "tables": {}}
    sides = available_sides(args) if set(tables) - {"data"} else []
    for name in tables:
        if name == "data":
            from benchmarks.data_paths import data_table
            report["tables"]["data"] = data_table(args.data_dir, args.data_images, args.batch, args.data_workers,
                                                  args.threads or None)
            print("\n" + report["tables"]["data"]["markdown"])
            continue
        if name == "imagenet":  # data=imagenet's JPEG decoders on the same files
            from benchmarks.imagenet_decode import table_on_files
            if args.threads:
                torch_threads(args.threads)
            root = Path(args.imagenet_root) if args.imagenet_root else None
            text = table_on_files(root, images=args.imagenet_images, batch_size=args.imagenet_batch,
                                  workers=max(args.data_workers))
            report["tables"]["imagenet"] = {"text": text}
            print("\n" + text)
            continue
        table = side_table(args if name == "pair" else overhead_args(args, name), sides)
        report["tables"][name] = table
        print(f"\n{TITLES[name]}: {table['setting']}\n")
        print(markdown_table(table["rows"], sides, per_step=name in PRESETS))
    report["machine"]["load_average_after"] = load_average()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


TITLES = {"pair": "Training throughput", "overhead": "Per-step overhead (the framework's host work)",
          "host": "Host work per step, arithmetic nearly removed"}


def load_average() -> list[float] | None:
    import os
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict:
    """Where the figures were made: the processor, its cores and load, the date, the versions, the commit."""
    import datetime
    import os
    import platform
    import pytorch_lightning as pl
    import torch
    from runs.folders import git_state
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import torchdistill
        torchdistill_version = torchdistill.__version__
    except ImportError:
        torchdistill_version = None
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "cpu": cpu, "cpu_count": os.cpu_count(), "load_average_before": load_average(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "lightning": pl.__version__,
            "torchdistill": torchdistill_version, **git_state()}


SIDE_NAMES = {"lightning": "(a) Lightning", "loop": "(b) plain loop", "torchdistill": "(c) torchdistill"}
SIDE_LETTERS = {"lightning": "(a)", "loop": "(b)", "torchdistill": "(c)"}


def figure(value, form: str = "{:.1f}") -> str:
    """A table cell: the formatted number, or "-" where the run gave none (failed, skipped, not applicable)."""
    return "-" if value is None else form.format(value)


def markdown_table(rows: list[dict], sides: list[str], per_step: bool = False) -> str:
    """Rows of summarise() (with "batch" where rows differ in it) as a Markdown table; GPU busy where measured;
    with `per_step`, each side's median wall ms and CPU ms per step."""
    has_a = "lightning" in sides
    ratios = [s for s in ("loop", "torchdistill") if s in sides and has_a]
    letters = "/".join(SIDE_LETTERS[s] for s in sides)
    batch = any("batch" in r for r in rows)
    busy = any(r.get(f"{s}_gpu_busy") is not None for r in rows for s in sides)
    header = (["method"] + (["batch"] if batch else []) + [f"{SIDE_NAMES[s]} img/s" for s in sides]
              + [f"(a)/{SIDE_LETTERS[s]}" for s in ratios] + [f"peak MB {letters}"]
              + ([f"GPU busy {letters}"] if busy else [])
              + ([f"ms/step {letters}", f"CPU ms/step {letters}"] if per_step else [])
              + (["CIFAR-100 epoch (a)"] if has_a and not per_step else []))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = ([r["method"]] + ([str(r.get("batch", ""))] if batch else [])
                 + [figure(r.get(f"{s}_samples_per_s")) for s in sides]
                 + [figure(r.get(f"ratio_a_over_{s}"), "{:.3f}") for s in ratios]
                 + [" / ".join(figure(r.get(f"{s}_peak_mb"), "{:.0f}") for s in sides)]
                 + ([" / ".join(figure(r.get(f"{s}_gpu_busy"), "{:.0%}") for s in sides)] if busy else [])
                 + ([" / ".join(figure(r.get(f"{s}_step_ms_median"), "{:.2f}") for s in sides),
                     " / ".join(figure(_ms(r.get(f"{s}_cpu_s_per_step")), "{:.2f}") for s in sides)]
                    if per_step else [])
                 + ([figure(r.get("cifar100_epoch_s"), "{:.0f} s")] if has_a and not per_step else []))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def torch_threads(count: int) -> None:
    import torch
    torch.set_num_threads(count)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else 1000 * seconds


if __name__ == "__main__":
    main()
