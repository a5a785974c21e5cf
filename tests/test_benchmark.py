"""The benchmark (scripts/benchmark.py, benchmarks/training.py) compares like with like: (a) the Lightning module and (b) the plain loop train the
same student to the same weights, for each method it times."""
import argparse

import pytest
import torch

from benchmarks import training as benchmark


def benchmark_args(**overrides) -> argparse.Namespace:
    settings = dict(teacher="resnet8", student="resnet8", batch=8, steps=2, warmup=1, device="cpu", precision="32",
                    fast=False, compile=False)
    return argparse.Namespace(**{**settings, **overrides})


@pytest.mark.parametrize("method", ["student", "kd", "crd"])
def test_lightning_side_and_plain_loop_train_the_same_student(method):
    lightning, loop = {}, {}
    benchmark.run_lightning(benchmark_args(), method, trained=lightning)
    benchmark.run_loop(benchmark_args(), method, trained=loop)
    assert lightning.keys() == loop.keys()
    args = benchmark_args()
    start = benchmark.build_models(args, method, benchmark.make_loader(args)).model.state_dict()
    assert any(not torch.equal(start[k], loop[k]) for k in loop)  # the steps did train
    for key in loop:
        torch.testing.assert_close(lightning[key], loop[key], rtol=1e-4, atol=1e-5, msg=key)


def test_markdown_table_puts_each_ratio_under_its_sides():
    row = {"method": "kd", "lightning_samples_per_s": 300.0, "loop_samples_per_s": 310.0,
           "torchdistill_samples_per_s": 200.0, "ratio_a_over_loop": 300 / 310, "ratio_a_over_torchdistill": 1.5,
           "lightning_peak_mb": 900, "loop_peak_mb": 910, "torchdistill_peak_mb": 800, "cifar100_epoch_s": 166.7}
    table = benchmark.markdown_table([row], ["lightning", "loop", "torchdistill"])
    header, _, line = table.splitlines()
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in line.strip("|").split("|")]))
    assert cells["(a)/(b)"] == "0.968" and cells["(a)/(c)"] == "1.500"
    assert cells["(c) torchdistill img/s"] == "200.0" and cells["CIFAR-100 epoch (a)"] == "167 s"


@pytest.mark.parametrize("method", ["student", "kd"])
def test_torchdistill_side_trains_the_same_student_as_the_loop(method):
    """(c) at equal numerics: torchdistill's KDLoss (alpha 0.1, T 4) is the project's CE 0.1 + KD 0.9 objective,
    so the same data, weights and optimizer give the same student. Needs torchdistill (not a dependency)."""
    pytest.importorskip("torchdistill")
    loop, torchdistill = {}, {}
    benchmark.run_loop(benchmark_args(), method, trained=loop)
    benchmark.run_torchdistill(benchmark_args(), method, trained=torchdistill)
    for key in loop:
        torch.testing.assert_close(torchdistill[key], loop[key], rtol=1e-4, atol=1e-5, msg=key)


def test_fast_path_sides_train_the_same_student_from_the_cached_teacher(monkeypatch):
    """--fast on both sides: channels_last, batches normalised from the device-resident set, and for KD the
    teacher's logits looked up from the cache: after the table is made, its model runs only for the task's
    shape probe, never in a training step."""
    lightning, loop, calls = {}, {}, []
    made = benchmark.cached_teacher

    def counting(teacher, loader, device):
        cached = made(teacher, loader, device)
        cached.model.register_forward_hook(lambda *_: calls.append(1))
        return cached
    monkeypatch.setattr(benchmark, "cached_teacher", counting)
    args = benchmark_args(fast=True)
    assert benchmark.caches_teacher(args, benchmark.objective_for("kd"))
    assert not benchmark.caches_teacher(args, benchmark.objective_for("crd"))  # reads teacher features
    benchmark.run_lightning(args, "kd", trained=lightning)
    benchmark.run_loop(args, "kd", trained=loop)
    assert len(calls) == 2  # one probe per side
    for key in loop:
        torch.testing.assert_close(lightning[key], loop[key], rtol=1e-4, atol=1e-5, msg=key)


def test_overhead_table_is_a_default_with_its_own_tiny_pair():
    args = benchmark.arguments([])
    assert args.tables.split(",") == ["pair", "overhead"]
    tiny = benchmark.overhead_args(benchmark.arguments(["--batch", "64", "--teacher", "resnet110", "--sides", "loop"]))
    assert (tiny.teacher, tiny.student, tiny.batch, tiny.threads, tiny.steps, tiny.warmup) == (
        "resnet8", "resnet8", 4, 1, 60, 10)
    assert tiny.methods == "student,kd,crd" and tiny.sides == "loop" and tiny.repeats == 3
    host = benchmark.overhead_args(benchmark.arguments(["--overhead-repeats", "5"]), "host")
    assert (host.teacher, host.student, host.batch, host.threads, host.methods, host.repeats) == (
        "mlp", "mlp", 4, 1, "student,kd", 5)
    with pytest.raises(SystemExit, match="unknown tables"):
        benchmark.main(["--tables", "pair,speed"])


def test_per_step_table_shows_each_sides_step_and_host_time():
    row = {"method": "kd", "lightning_samples_per_s": 200.0, "loop_samples_per_s": 210.0, "ratio_a_over_loop": 0.952,
           "lightning_step_ms_median": 20.0, "loop_step_ms_median": 19.0, "lightning_cpu_s_per_step": 0.0105,
           "loop_cpu_s_per_step": 0.01}
    header, _, line = benchmark.markdown_table([row], ["lightning", "loop"], per_step=True).splitlines()
    cells = dict(zip([c.strip() for c in header.strip("|").split("|")], [c.strip() for c in line.strip("|").split("|")]))
    assert cells["ms/step (a)/(b)"] == "20.00 / 19.00" and cells["CPU ms/step (a)/(b)"] == "10.50 / 10.00"
    assert "CIFAR-100 epoch (a)" not in cells
