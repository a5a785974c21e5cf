"""The GPU check's dry run (its code paths on the CPU, through scripts/gpu_check.py) writes its JSON and Markdown
table; the GPU busy fraction's arithmetic; the hot path's host synchronisations that were removed stay removed
where a CPU test can see it (the progress bar's reads, the cached teacher's check)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from models.teachers import CachedTeacher, FrozenTeacher
from benchmarks.timing import activity_intervals, busy_fraction
from tasks.callbacks import ThrottledProgressBar
from tasks.classification import ClassificationTask

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run_writes_every_section_as_json_and_markdown(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline"}
    finished = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--out",
                               str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = data["sections"]
    assert data["environment"]["dry_run"] and set(sections) == {"ddp", "sides", "overhead", "fast_path", "graphs",
                                                                 "epoch", "kd_methods"}
    failed = {f"{name} {key}": value for name, results in sections.items() for key, value in results.items()
              if isinstance(value, dict) and ("error" in value or "skipped" in value)}
    assert not failed, failed
    for name in ("sides", "fast_path"):
        for method in ("student", "kd", "crd"):
            for side in ("lightning", "loop"):
                run = sections[name][f"{method}/8/{side}"]
                assert run["samples_per_s"] > 0 and run["gpu_busy"] is None and run["peak_memory_mb"] is None
    for method in ("student", "kd", "crd"):  # the tiny pair's per-step figures
        for side in ("lightning", "loop"):
            run = sections["overhead"][f"{method}/4/{side}"]
            assert run["step_ms_median"] > 0 and run["cpu_s_per_step"] > 0
    for side in ("lightning", "loop"):  # compile=graphs: uncompiled on the CPU, the same code path otherwise
        assert sections["graphs"][f"kd/8/{side}"]["samples_per_s"] > 0
    epoch = sections["epoch"]["run"]
    assert len(epoch["epochs"]) == 2 and all(e["train_s"] > 0 and e["validation_s"] > 0 for e in epoch["epochs"])
    assert epoch["recipe_240_epochs_min"] == pytest.approx(
        (epoch["epochs"][0]["epoch_s"] + 239 * epoch["epochs"][1]["epoch_s"]) / 60)
    assert {"kd", "crd", "fitnet"} <= set(sections["kd_methods"])
    assert all(sections["kd_methods"][m]["finite"] and sections["kd_methods"][m]["step_ms"] > 0
               for m in ("kd", "crd", "fitnet"))
    assert sections["ddp"]["run"]["epochs"] == 1 and sections["ddp"]["run"]["strategy"] == "ddp"
    table = (tmp_path / "gpu_check.md").read_text()
    for heading in ("## Targets", "## Equal numerics, fp32", "## Per-step overhead", "## Fast path", "## CUDA graphs",
                    "## Recipe epochs", "## Every kd= method", "## trainer=ddp"):
        assert heading in table
    assert "| kd | 8 |" in table and "| fitnet |" in table and "Errors" not in table


def test_busy_fraction_is_the_union_of_activity_over_its_span():
    # busy 0-2 and 3-6 (the overlap 4-5 counted once) of the span 0-10; idle 2-3 and 6-9
    assert busy_fraction([(3, 5), (0, 2), (4, 6), (9, 10)]) == pytest.approx(6 / 10)
    assert busy_fraction([(0, 4), (1, 2)]) == 1.0
    assert busy_fraction([]) is None


def test_activity_intervals_read_the_profilers_events_of_one_device():
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiler:
        torch.randn(64, 64) @ torch.randn(64, 64)
    cpu = activity_intervals(profiler, torch.autograd.DeviceType.CPU)
    assert cpu and all(start <= end for start, end in cpu)
    assert activity_intervals(profiler, torch.autograd.DeviceType.CUDA) == []


def reads_of_step_values(monkeypatch, progress_bar: pl.callbacks.RichProgressBar, batches: int) -> int:
    """How often the progress bar asks Lightning for the logged values (each a .item() per value) in one epoch."""
    reads = []
    original = pl.callbacks.RichProgressBar.get_metrics

    def counting(self, trainer, pl_module):
        reads.append(trainer.global_step)
        return original(self, trainer, pl_module)
    monkeypatch.setattr(pl.callbacks.RichProgressBar, "get_metrics", counting)
    data = TensorDataset(torch.randn(batches * 4, 6), torch.randint(0, 3, (batches * 4,)), torch.arange(batches * 4))
    task = ClassificationTask(torch.nn.Linear(6, 3), 3, lambda p: torch.optim.SGD(p, lr=0.1))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_model_summary=False, limit_val_batches=0, callbacks=[progress_bar])
    trainer.fit(task, DataLoader(data, batch_size=4))
    return len(reads)


def test_progress_bar_reads_step_values_every_n_steps_not_every_step(monkeypatch):
    assert reads_of_step_values(monkeypatch, pl.callbacks.RichProgressBar(), batches=12) >= 12  # Lightning's own
    # batch 1 (nothing shown yet), 4, 8, 12, and the epoch's end
    assert reads_of_step_values(monkeypatch, ThrottledProgressBar(every_n_steps=4), batches=12) == 5


def test_cached_teacher_still_refuses_an_example_outside_its_table():
    table = torch.randn(4, 1, 3)
    table[2] = float("nan")  # example 2 was never cached
    teacher = CachedTeacher(FrozenTeacher(torch.nn.Linear(5, 3)), table, cache_calls=0)
    logits, _ = teacher(torch.randn(2, 5), torch.tensor([0, 3]))
    assert torch.equal(logits, table[[0, 3], 0])
    with pytest.raises(RuntimeError, match="outside the cached pool"):
        teacher(torch.randn(2, 5), torch.tensor([1, 2]))
