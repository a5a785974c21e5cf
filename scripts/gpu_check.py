"""The speed check for one GPU (H100 / H200), in one command, offline, in about 6 minutes:

    python scripts/gpu_check.py --out results/benchmarks/gpu             # CUDA
    python scripts/gpu_check.py --out /tmp/gpu-check --dry-run           # the same code paths on the CPU
    python scripts/gpu_check.py --out DIR --sections kd_methods --kd-methods crd,vid   # finish what a run left

It writes DIR/gpu_check.json and DIR/gpu_check.md after every measurement, so a run stopped by a time limit
keeps what it measured. Each section has a share of the time budget (--budget-s, 330 s): a run not started
within it is recorded as skipped. Sections, in order; each records its errors and the check goes on:
- ddp: a 1-GPU `trainer=ddp` smoke run of the recipe below on a few hundred images (its own process);
- sides: scripts/benchmark.py's (a) Lightning, (b) plain loop and (c) torchdistill (when importable) at fp32,
  equal numerics, for student, KD and CRD on resnet32x4 -> resnet8x4 at batch 128 and 64;
- fast_path: (a) and (b) on the fast path: bf16-mixed, channels_last, torch.compile, device-resident data, the
  teacher's logits cached where its outputs are fixed (KD);
- epoch: two epochs of `experiment=repdistiller/kd_resnet32x4_resnet8x4` with the fast switches, each timed
  end to end with validation, extrapolated to the 240-epoch recipe (epoch 1 holds the compilation);
- kd_methods: every `kd=` method's main-phase step (pre-training phases left out) under bf16-mixed with
  compile, and KD under each optimizer-level method (`kd@dot`: optimizer=dot): finite loss, time per step,
  graphs compiled and graph breaks.
Data are CIFAR-100-shaped random uint8 images made on this machine (no download) and the teacher is randomly
initialised: speed does not depend on the values. The figures: images/s over timed steps after warm-up;
peak GPU memory allocated during the timed steps, less what was allocated before the run; GPU busy fraction:
the share of the span of a few further profiled steps during which a kernel, copy or set runs
(scripts/benchmark_timing.py). `--dry-run` runs every section on the CPU with tiny sizes (DRY_RUN below) and
without compilation, and reports the CUDA-only figures (GPU memory, GPU busy) as not applicable.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from runs.configs import CFG_DIR, compose as compose_config
from scripts import benchmark
from scripts.benchmark_timing import Timer, tick_callback
from scripts.gpu_check_report import markdown_report

SECTIONS = ("ddp", "sides", "fast_path", "epoch", "kd_methods")
# When each section must have started its last run, as a share of the time budget.
SECTION_ENDS = {"ddp": 0.08, "sides": 0.30, "fast_path": 0.62, "epoch": 0.80, "kd_methods": 1.0}
METHODS = ("student", "kd", "crd")
RECIPE = "repdistiller/kd_resnet32x4_resnet8x4"


@dataclass(frozen=True)
class Plan:
    device: str
    teacher: str
    student: str
    batches: tuple[int, ...]
    warmup: int              # fp32 runs
    fast_warmup: int         # fast-path runs: the first steps compile
    steps: int               # timed steps
    profile_steps: int       # further steps under the profiler (CUDA)
    compile: bool | str      # torch.compile (or a backend name) on the fast path, recipe epoch and kd= steps
    train_images: int        # the fake CIFAR-100 set of the recipe epoch, the kd= steps and the ddp run
    test_images: int
    recipe_epochs: int
    method_batch: int
    budget_s: float
    model_overrides: tuple[str, ...] = ()
    crd_negatives: int = benchmark.CRD_NEGATIVES
    threads: int | None = None  # torch CPU threads (None: torch's default)
    kd_methods: tuple[str, ...] | None = None  # None: every cfg/kd file


GPU = Plan(device="cuda", teacher="resnet32x4", student="resnet8x4", batches=(128, 64), warmup=5, fast_warmup=5,
           steps=30, profile_steps=10, compile=True, train_images=50_000, test_images=10_000, recipe_epochs=2,
           method_batch=64, budget_s=330)
# The dry run: tiny models and data, no compilation, CRD with 64 negatives, three kd= methods (a logit method, a
# memory bank, a feature method with a pre-training phase), one torch thread (on a shared CPU, tiny ops on two
# threads wait for each other at every op).
DRY_RUN = Plan(device="cpu", teacher="resnet8", student="resnet8", batches=(8,), warmup=1, fast_warmup=1,
               steps=2, profile_steps=0, compile=False, train_images=96, test_images=32, recipe_epochs=2,
               method_batch=8, budget_s=3600, model_overrides=("student=resnet8", "teacher/model=resnet8"),
               crd_negatives=64, threads=1, kd_methods=("kd", "crd", "fitnet"))


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU, tiny sizes, no compile")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--kd-methods", default=None, help="comma-separated kd= names (default: every cfg/kd file)")
    parser.add_argument("--budget-s", type=float, default=None, help="time budget in seconds (default: the plan's)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)     # ddp: the smoke run, in its process
    parser.add_argument("--workspace", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


class Report:
    """The check's results, rewritten as JSON and Markdown after every change."""

    def __init__(self, folder: Path, header: dict) -> None:
        self.folder, self.data = folder, {**header, "sections": {}}
        folder.mkdir(parents=True, exist_ok=True)

    def put(self, section: str, key: str, value) -> None:
        self.data["sections"].setdefault(section, {})[key] = value
        self.write()

    def write(self) -> None:
        (self.folder / "gpu_check.json").write_text(json.dumps(self.data, indent=2, default=str))
        (self.folder / "gpu_check.md").write_text(markdown_report(self.data))


def failure(error: BaseException) -> dict:
    return {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}


def fresh(plan: Plan) -> float:
    """Frees what earlier runs left and forgets compiled code (each run compiles for itself; identical graphs
    come from inductor's cache); returns the memory still allocated on the GPU, in MB."""
    import torch
    gc.collect()
    torch._dynamo.reset()
    LIMIT_HITS.count = 0
    if plan.device != "cuda":
        return 0.0
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    return torch.cuda.memory_allocated() / 2**20


# ------------------------------------------------------------------------------------------------ data
def make_workspace(plan: Plan, folder: Path) -> dict:
    """Random CIFAR-100 files in torchvision's layout (let through its md5 check in this process) and a random
    teacher's state dict (a foreign checkpoint, built as teacher/model)."""
    import torch
    from models import build_model
    from datamodules.cifar_files import accept_unverified_cifar_files, write_random_cifar
    write_random_cifar(folder / "data", "cifar100", n_train=plan.train_images, n_test=plan.test_images)
    accept_unverified_cifar_files()
    torch.manual_seed(0)
    teacher = folder / f"{plan.teacher}.pt"
    torch.save(build_model(plan.teacher, 100).state_dict(), teacher)
    return {"data": str(folder / "data"), "teacher": str(teacher), "outputs": str(folder / "outputs")}


def device_overrides(plan: Plan, trainer: str) -> list[str]:
    """One device of the plan's kind; on the CPU bf16-mixed, except fp32 for the DDP smoke run: bf16 convolutions
    on a CPU without bf16 units run ~25x slower, and that run checks the strategy, not the precision."""
    if plan.device == "cuda":
        return ["trainer.devices=1"]
    ddp = trainer == "ddp"  # SyncBatchNorm runs on GPUs only
    return ["trainer.accelerator=cpu", "trainer.devices=1", f"trainer.precision={'32' if ddp else 'bf16-mixed'}",
            *(["trainer.sync_batchnorm=false"] if ddp else [])]


def compose(plan: Plan, workspace: dict, overrides: list[str], trainer: str = "gpu"):
    """The distillation config of `overrides` on the workspace's data and teacher, with cfg/trainer/`trainer`
    (bf16-mixed) on one device of the plan's kind."""
    common = [f"trainer={trainer}", *device_overrides(plan, trainer), f"teacher.checkpoint={workspace['teacher']}",
              "data.download=false", f"paths.data_dir={workspace['data']}", f"paths.output_dir={workspace['outputs']}"]
    return compose_config("distill", [*common, *overrides, *plan.model_overrides])


def command_line(plan: Plan, trainer: str, overrides: list[str]) -> str:
    """The distill_train.py command of a composed run (teacher and paths: the check's workspace)."""
    return (f"python distill_train.py trainer={trainer} {' '.join(device_overrides(plan, trainer))} "
            f"{' '.join([*overrides, *plan.model_overrides])} teacher.checkpoint=TEACHER paths.data_dir=FAKE_CIFAR")


class RecompileLimitHits(logging.Handler):
    """Counts dynamo's "hit config.recompile_limit" warnings: past that limit a frame runs uncompiled."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += "hit config." in record.getMessage()


LIMIT_HITS = RecompileLimitHits()


def dynamo_counts() -> dict:
    """Graphs compiled, graph breaks and recompile-limit hits since the last fresh()."""
    from torch._dynamo.utils import counters
    return {"graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values())), "recompile_limit_hits": LIMIT_HITS.count}


# ------------------------------------------------------------------------------------------- sections
def side_args(plan: Plan, batch: int, fast: bool) -> argparse.Namespace:
    return argparse.Namespace(teacher=plan.teacher, student=plan.student, batch=batch, steps=plan.steps,
                              warmup=plan.fast_warmup if fast else plan.warmup, profile_steps=plan.profile_steps,
                              device=plan.device, precision="bf16-mixed" if fast else "32", fast=fast,
                              compile=plan.compile if fast else False, crd_negatives=plan.crd_negatives)


def measure(plan: Plan, side: str, args: argparse.Namespace, method: str) -> dict:
    before = fresh(plan)
    started = time.perf_counter()
    result = benchmark.SIDES[side](args, method)
    result["peak_memory_mb"] = result["peak_memory_mb"] - before if plan.device == "cuda" else None
    return {**result, "run_s": time.perf_counter() - started}


def sides_section(plan: Plan, report: Report, clock, name: str, sides: list[str], fast: bool) -> None:
    for batch in plan.batches:
        for method in METHODS:
            for side in sides:
                key = f"{method}/{batch}/{side}"
                if clock.past(name):
                    report.put(name, key, {"skipped": "the time budget of this section was spent"})
                    continue
                try:
                    report.put(name, key, measure(plan, side, side_args(plan, batch, fast), method))
                except Exception as error:  # noqa: BLE001 - fail soft: record it, measure the rest
                    report.put(name, key, failure(error))
                print(f"[{clock.elapsed():6.0f} s] {name} {key}: {report.data['sections'][name][key]}", flush=True)


def epoch_clock(device: str):
    """A Lightning callback noting the wall time of each epoch's start, of its validation's start and of the
    end of training (the GPU synchronised first, so queued work counts where it ran)."""
    import pytorch_lightning as pl
    import torch

    def now() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter()

    class EpochClock(pl.Callback):
        def __init__(self):
            self.epochs, self.validations, self.end = [], [], None

        def on_train_epoch_start(self, trainer, pl_module):
            self.epochs.append(now())

        def on_validation_start(self, trainer, pl_module):
            if not trainer.sanity_checking and len(self.validations) < len(self.epochs):
                self.validations.append(now())

        def on_train_end(self, trainer, pl_module):
            self.end = now()
    return EpochClock()


def epoch_section(plan: Plan, report: Report, clock, workspace: dict) -> None:
    from runs.training import run_distill
    if clock.past("epoch"):
        report.put("epoch", "run", {"skipped": "the time budget of this section was spent"})
        return
    overrides = [f"experiment={RECIPE}", f"trainer.max_epochs={plan.recipe_epochs}", "data.device_resident=true",
                 "channels_last=true", f"compile={str(plan.compile).lower()}", "data.num_workers=0"]
    cfg = compose(plan, workspace, overrides)
    fresh(plan)
    epochs = epoch_clock(plan.device)
    started = time.perf_counter()
    record = run_distill(cfg, quiet=True, callbacks=[epochs])
    wall = time.perf_counter() - started
    ends = [*epochs.epochs[1:], epochs.end]
    per_epoch = [{"epoch_s": end - start, "train_s": val - start, "validation_s": end - val}
                 for start, val, end in zip(epochs.epochs, epochs.validations, ends)]
    steady = per_epoch[-1]["epoch_s"]
    report.put("epoch", "run", {
        "command": command_line(plan, "gpu", overrides), "train_images": plan.train_images,
        "epochs": per_epoch, "fit_and_evaluation_s": wall, "dynamo": dynamo_counts(),
        "steady_train_images_per_s": plan.train_images / per_epoch[-1]["train_s"],
        "recipe_240_epochs_min": (per_epoch[0]["epoch_s"] + (240 - 1) * steady) / 60,
        "last_test_top1": record["last"].get("test/top1")})


def kd_methods_section(plan: Plan, report: Report, clock, workspace: dict, names: list[str]) -> None:
    for name in names:
        if clock.past("kd_methods"):
            report.put("kd_methods", name, {"skipped": "the time budget was spent; rerun with --sections kd_methods "
                                                        f"--kd-methods {name},..."})
            continue
        try:
            report.put("kd_methods", name, one_method_step(plan, workspace, name))
        except Exception as error:  # noqa: BLE001 - fail soft: record it, step the rest
            report.put("kd_methods", name, failure(error))
        print(f"[{clock.elapsed():6.0f} s] kd={name}: {report.data['sections']['kd_methods'][name]}", flush=True)


# Optimizer-level methods, measured on KD: NAME@OPTIMIZER is kd=NAME with optimizer=OPTIMIZER (e.g. DOT's two gradients).
OPTIMIZER_METHODS = ("kd@dot",)


def one_method_step(plan: Plan, workspace: dict, name: str) -> dict:
    """kd=name's main-phase step under bf16-mixed (and compile): 1 warm-up step, then 2 timed. A name
    METHOD@OPTIMIZER runs kd=METHOD with optimizer=OPTIMIZER."""
    import pytorch_lightning as pl
    import torch
    from omegaconf import open_dict
    from runs.training import build_distillation
    batch, warmup, timed = plan.method_batch, 1, 2
    method, _, optimizer = name.partition("@")
    cfg = compose(plan, workspace, [
        "~experiment", "data=cifar100", "data.val_size=0", f"data.batch_size={batch}", "data.num_workers=0",
        "data.device_resident=true", f"data.train_subset={batch * (warmup + timed)}", f"kd={method}",
        f"compile={str(plan.compile).lower()}", "student=resnet8x4", "teacher/model=resnet32x4",
        *([f"optimizer={optimizer}"] if optimizer else [])])
    with open_dict(cfg):
        if "phases" in cfg.kd:  # the main phase's step: pre-training phases left out
            cfg.kd.phases = None
    before = fresh(plan)
    datamodule, task, _ = build_distillation(cfg)
    args = argparse.Namespace(warmup=warmup, steps=timed, batch=batch, profile_steps=0)
    timer = Timer(args, torch.device(plan.device))
    losses = []

    class LastLoss(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch_data, batch_idx):
            losses.append(outputs["loss"])
    trainer = pl.Trainer(accelerator="gpu" if plan.device == "cuda" else "cpu", devices=1,
                         precision="bf16-mixed", max_epochs=1, limit_train_batches=warmup + timed, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, num_sanity_val_steps=0,
                         callbacks=[tick_callback(timer), LastLoss()])
    trainer.fit(task, datamodule)
    result = timer.result()
    loss = float(losses[-1])
    return {"loss": loss, "finite": bool(torch.isfinite(torch.tensor(loss))),
            "step_ms": 1000 * batch / result["samples_per_s"], "batch": batch, **dynamo_counts(),
            "peak_memory_mb": result["peak_memory_mb"] - before if plan.device == "cuda" else None}


def ddp_section(plan: Plan, report: Report, clock, workspace: dict, out: Path) -> None:
    if clock.past("ddp"):
        report.put("ddp", "run", {"skipped": "the time budget of this section was spent"})
        return
    result_file = out / "ddp_result.json"
    command = [sys.executable, __file__, "--out", str(out), "--worker", "ddp", "--workspace", json.dumps(workspace)]
    if plan.device != "cuda":
        command.append("--dry-run")
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, timeout=max(60.0, clock.left()))
    if finished.returncode != 0 or not result_file.is_file():
        report.put("ddp", "run", {"error": f"exit status {finished.returncode}", "traceback": finished.stderr[-3000:]})
        return
    report.put("ddp", "run", {**json.loads(result_file.read_text()), "process_s": time.perf_counter() - started})
    result_file.unlink()


def ddp_worker(plan: Plan, workspace: dict, out: Path) -> None:
    """The recipe under trainer=ddp on one device, a few hundred images, one epoch."""
    import torch
    from runs.training import run_distill
    if plan.threads:
        torch.set_num_threads(plan.threads)
    from datamodules.cifar_files import accept_unverified_cifar_files
    accept_unverified_cifar_files()
    overrides = [f"experiment={RECIPE}", "trainer.max_epochs=1", f"data.train_subset={min(512, plan.train_images)}",
                 f"data.test_subset={min(256, plan.test_images)}", "data.num_workers=0",
                 "trainer.enable_progress_bar=false"]
    started = time.perf_counter()
    record = run_distill(compose(plan, workspace, overrides, trainer="ddp"), quiet=True)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    (out / "ddp_result.json").write_text(json.dumps({
        "command": command_line(plan, "ddp", overrides),
        "epochs": record["epochs"],
        "strategy": record["config"]["trainer"]["strategy"], "last_test_top1": record["last"].get("test/top1"),
        "run_s": time.perf_counter() - started}))


# ----------------------------------------------------------------------------------------------- main
class Clock:
    def __init__(self, budget_s: float) -> None:
        self.budget_s, self.started = budget_s, time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def left(self) -> float:
        return self.budget_s - self.elapsed()

    def past(self, section: str) -> bool:
        return self.elapsed() > SECTION_ENDS[section] * self.budget_s


def environment(plan: Plan, dry_run: bool) -> dict:
    import pytorch_lightning as pl
    import torch
    found = {"python": sys.version.split()[0], "torch": torch.__version__, "lightning": pl.__version__,
             "dry_run": dry_run, "plan": asdict(plan), "torch_threads": torch.get_num_threads()}
    if plan.device == "cuda":
        found.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda,
                     gpu_memory_gb=torch.cuda.get_device_properties(0).total_memory / 2**30)
    try:
        import torchdistill
        found["torchdistill"] = torchdistill.__version__
    except ImportError:
        found["torchdistill"] = None
    return found


def main(argv=None) -> None:
    args = arguments(argv)
    plan = DRY_RUN if args.dry_run else GPU
    out = Path(args.out)
    if args.worker == "ddp":
        return ddp_worker(plan, json.loads(args.workspace), out)
    import torch
    if plan.threads:
        torch.set_num_threads(plan.threads)
    benchmark.keep_freed_memory()  # as scripts/benchmark.py's workers
    if plan.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: no CUDA device here; run with --dry-run for the CPU check of the code paths")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("torch._dynamo").addHandler(LIMIT_HITS)
    sections = [s.strip() for s in args.sections.split(",")]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        raise SystemExit(f"error: unknown sections {unknown}; use some of {', '.join(SECTIONS)}")
    clock = Clock(args.budget_s or plan.budget_s)
    report = Report(out, {"command": " ".join(["python scripts/gpu_check.py", *(argv or sys.argv[1:])]),
                          "environment": environment(plan, args.dry_run)})
    sides = ["lightning", "loop", *(["torchdistill"] if report.data["environment"]["torchdistill"] else [])]
    names = (args.kd_methods.split(",") if args.kd_methods else list(plan.kd_methods or [])
             or [*sorted(p.stem for p in (CFG_DIR / "kd").glob("*.yaml")), *OPTIMIZER_METHODS])
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        workspace = make_workspace(plan, Path(folder))
        steps = {"ddp": lambda: ddp_section(plan, report, clock, workspace, out),
                 "sides": lambda: sides_section(plan, report, clock, "sides", sides, fast=False),
                 "fast_path": lambda: sides_section(plan, report, clock, "fast_path", ["lightning", "loop"], fast=True),
                 "epoch": lambda: epoch_section(plan, report, clock, workspace),
                 "kd_methods": lambda: kd_methods_section(plan, report, clock, workspace, names)}
        for section in sections:
            started = time.perf_counter()
            try:
                steps[section]()
            except Exception as error:  # noqa: BLE001 - fail soft: the next section still runs
                report.put(section, "section_error", failure(error))
            report.put(section, "section_s", time.perf_counter() - started)
            print(f"[{clock.elapsed():6.0f} s] {section} done (this process's CPU time so far "
                  f"{time.process_time():.0f} s)", flush=True)
    report.data["total_s"] = clock.elapsed()
    report.write()
    print(markdown_report(report.data))


if __name__ == "__main__":
    main()
