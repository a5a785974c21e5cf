"""Timing of training steps for the benchmark and the GPU check: samples per second over timed steps after
warm-up, the median and 10th-percentile step, peak memory, host CPU time and page faults per step, and on CUDA
the GPU's busy fraction."""
from __future__ import annotations

import resource
import time


def activity_intervals(profiler, device_type) -> list[tuple[int, int]]:
    """(start, end) in ns of every activity the profiler recorded on `device_type` (kernels, copies, sets)."""
    return [(event.start_ns(), event.end_ns()) for event in profiler.profiler.kineto_results.events()
            if event.device_type() == device_type]


def busy_fraction(intervals: list[tuple[int, int]]) -> float | None:
    """Time covered by at least one interval over the span from the first start to the last end."""
    if not intervals:
        return None
    busy, reach = 0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            busy, reach = busy + end - start, end
        elif end > reach:
            busy, reach = busy + end - reach, end
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    return busy / span if span > 0 else None


def host_usage() -> dict:
    """This process's CPU seconds and minor page faults so far: per step, they show host work that wall time
    on a shared machine hides (a fault is a fresh page the allocator had handed back to the system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s_per_step": usage.ru_utime + usage.ru_stime, "page_faults_per_step": usage.ru_minflt}


class Timer:
    """Samples per second over `args.steps` timed steps after `args.warmup` warm-up steps, and the peak memory
    over them (CUDA: allocated, from the timed window's start; CPU: the process's resident-set peak). On CUDA,
    with `args.profile_steps`, that many further steps run under torch.profiler (CUDA activity only, so the host
    side is barely slowed) for the GPU's busy fraction: the time covered by kernels, copies and sets over the
    span from the first one's start to the last one's end. Gaps between steps (data, host syncs, logging,
    Python) count as idle. Call step() at each step's start and once after the last."""

    def __init__(self, args, device):
        self.warmup, self.timed, self.batch, self.device = args.warmup, args.steps, args.batch, device
        self.profiled = getattr(args, "profile_steps", 0) if device.type == "cuda" else 0
        self.ticks, self.started, self.elapsed, self.peak, self.profiler, self.busy = 0, None, None, None, None, None
        self.host: dict = {}
        self.busy_error: str | None = None
        self.ticked: list[float] = []  # each timed step's start (and the window's end): the steps' wall times

    def _synchronize(self) -> None:
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self) -> None:
        import torch
        self.ticks += 1
        if self.warmup < self.ticks <= self.warmup + self.timed + 1:
            self.ticked.append(time.perf_counter())  # on CUDA: the host's pace, the GPU's once its queue is full
        if self.ticks == self.warmup + 1:
            self._synchronize()
            if self.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(self.device)
            self.started, self.host = time.perf_counter(), host_usage()
        if self.ticks == self.warmup + self.timed + 1:
            self._synchronize()
            self.elapsed = time.perf_counter() - self.started
            self.host = {key: (value - self.host[key]) / self.timed for key, value in host_usage().items()}
            self.peak = (torch.cuda.max_memory_allocated(self.device) if self.device.type == "cuda"
                         else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            if self.profiled:
                try:
                    self.profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                    self.profiler.__enter__()
                except Exception as error:  # noqa: BLE001 - no CUPTI here: the speed figures still stand
                    self.profiler, self.busy_error = None, f"{type(error).__name__}: {error}"
        if self.profiler is not None and self.ticks == self.warmup + self.timed + self.profiled + 1:
            self._synchronize()
            try:
                self.profiler.__exit__(None, None, None)
                self.busy = busy_fraction(activity_intervals(self.profiler, torch.autograd.DeviceType.CUDA))
            except Exception as error:  # noqa: BLE001
                self.busy_error = f"{type(error).__name__}: {error}"
            self.profiler = None

    def result(self) -> dict:
        if self.elapsed is None:
            raise RuntimeError(f"only {self.ticks - 1} steps ran; the timer needs {self.warmup} warm-up and "
                               f"{self.timed} timed steps")
        steps = sorted(1000 * (end - start) for start, end in zip(self.ticked, self.ticked[1:]))
        return {"samples_per_s": self.timed * self.batch / self.elapsed, "peak_memory_mb": self.peak / 2**20,
                "step_ms_median": steps[len(steps) // 2], "step_ms_low": steps[len(steps) // 10],
                "gpu_busy": self.busy, **({"gpu_busy_error": self.busy_error} if self.busy_error else {}), **self.host}


def tick_callback(timer: Timer):
    """A Lightning callback that ticks `timer` at each training batch's start and at the end of training."""
    import pytorch_lightning as pl

    class Tick(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            timer.step()

        def on_train_end(self, trainer, pl_module):
            timer.step()
    return Tick()
