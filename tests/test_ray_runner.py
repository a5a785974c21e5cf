"""ray_runner.py: a search with ASHA on a local Ray (loopback, 2 CPUs) finishes and leaves every trial's
run record; a trial that raises is retried and reported without stopping the sweep; an interrupted sweep
resumes where it stopped, its unfinished trial from its last checkpoint. The in-process sweeps share one Ray
session (started once, shut down after the module); the interrupted sweep's process starts its own."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from errors import ConfigError
from runs.training import run_train
from runs.sweep import _init_ray, parameter_space, run_sweep, split_arguments
from tests.helpers import compose_config, tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray (loopback, 2 CPUs, as the sweeps ask) for every in-process sweep of the module; the sweeps
    leave a session they did not start running."""
    import ray
    from omegaconf import OmegaConf
    assert _init_ray(OmegaConf.create({"num_cpus": 2}))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def teacher(data_dir, tmp_path_factory) -> str:
    outputs = tmp_path_factory.mktemp("sweep_teacher")
    record = run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=cnn1d")), quiet=True)
    return record["checkpoints"]["last"]


def sweep_arguments(data_dir, outputs, teacher, *extra):
    return ["search=kd_temperature", f"paths.output_dir={outputs}", f"paths.data_dir={data_dir}", "tune.num_cpus=2",
            f"teacher.checkpoint={teacher}", "data.train_subset=256", "data.test_subset=128", "data.val_size=128",
            "trainer.max_epochs=2", "trainer.enable_progress_bar=false", "trainer.accelerator=cpu", *extra]


def test_asha_sweep_finishes_retries_a_failing_trial_and_reports_it(data_dir, tmp_path, teacher, ray_session):
    runner, trials = split_arguments(sweep_arguments(
        data_dir, tmp_path, teacher, "tune.scheduler=asha", "tune.max_failures=1",
        # the trial at temperature 8 raises when training starts, on every attempt (a bad value, e.g. -1, would be
        # refused before Ray starts: tests/test_bad_input.py)
        "search.space={kd.terms.kd.temperature: {grid: [2, 4, 8]}}",
        "+callbacks.fail._target_=tests.helpers.FailAtTemperature", "+callbacks.fail.temperature=8"))
    summary = run_sweep(runner, trials)
    by_temperature = {t["params"]["kd.terms.kd.temperature"]: t for t in summary["trials"]}
    assert set(by_temperature) == {2, 4, 8}
    failed = by_temperature[8]
    assert failed["status"] == "error" and "temperature" in failed["error"] and failed["attempts"] == 2
    for temperature in (2, 4):
        trial = by_temperature[temperature]
        assert trial["status"] in ("finished", "stopped early") and trial["attempts"] == 1
        assert 0.0 <= trial["metric"] <= 1.0 and Path(trial["run_dir"]).is_dir()
    finished = [t for t in summary["trials"] if t["status"] == "finished"]
    assert finished and summary["best"]["status"] == "finished"
    for trial in finished:  # one report per training epoch (ASHA's rungs count them), none for the evaluations after
        assert trial["epochs_reported"] == 2
        record = json.loads(Path(trial["record"]).read_text())
        assert record["config"]["kd"]["terms"]["kd"]["temperature"] == trial["params"]["kd.terms.kd.temperature"]
    assert json.loads(Path(summary["path"]).read_text())["metric"] == "val_top1"
    with pytest.raises(ConfigError, match="already exists"):  # nothing already written is overwritten
        run_sweep(runner, trials)


def test_interrupted_sweep_resumes_from_the_last_checkpoint(data_dir, tmp_path, teacher, ray_session):
    arguments = sweep_arguments(data_dir, tmp_path, teacher, "tune.max_concurrent=1", "trainer.max_epochs=25",
                                "search.space={kd.terms.kd.temperature: {grid: [2, 4]}}")
    env = {**os.environ, "WANDB_MODE": "offline", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    process = subprocess.Popen([sys.executable, str(ROOT / "ray_runner.py"), *arguments], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        while not list((tmp_path / "distill").glob("*/checkpoints/last.ckpt")) and time.time() < deadline:
            assert process.poll() is None, "the sweep ended before it could be interrupted"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # Ctrl+C: Ray Tune saves the sweep's state and stops
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    interrupted = [p for p in (tmp_path / "distill").glob("*") if p.is_dir() and not (p / "record.json").is_file()]
    assert interrupted, "the interruption came after every trial had finished"

    runner, trials = split_arguments([*arguments, "tune.resume=true"])
    summary = run_sweep(runner, trials)
    assert [t["status"] for t in summary["trials"]] == ["finished", "finished"]
    resumed = [json.loads((p / "record.json").read_text()) for p in interrupted]
    assert all(r["resumed_from"] and r["epochs"] == 25 for r in resumed)


def test_search_space_and_arguments_are_checked():
    with pytest.raises(ConfigError, match="must be one of"):
        parameter_space({"seed": {"between": [0, 3]}})
    with pytest.raises(ConfigError, match="low < high"):
        parameter_space({"optimizer.lr": {"loguniform": [0.1, 0.01]}})
    runner, trials = split_arguments(["search=x", "tune.scheduler=asha", "paths.output_dir=o", "kd=dkd", "+a.b=1"])
    assert runner == ["search=x", "tune.scheduler=asha", "paths.output_dir=o"]
    assert trials == ["paths.output_dir=o", "kd=dkd", "+a.b=1"]


def test_a_local_sweep_asking_for_a_gpu_where_there_is_none_is_refused(tmp_path):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    runner, trials = split_arguments(["search=kd_temperature", f"paths.output_dir={tmp_path}", "tune.resources.gpu=0.25"])
    with pytest.raises(ConfigError, match=r"tune.resources.gpu=0.25 asks for a GPU per trial, but this machine has none"):
        run_sweep(runner, trials)
    assert not (tmp_path / "tune").exists()



def test_sweep_table_reads_at_80_columns_in_percent(capsys, monkeypatch):
    from runs.sweep import plain_logs_off_terminal, print_summary
    trial = {"params": {"kd.terms.kd.temperature": 4, "kd.terms.kd.weight": 0.9}, "metric": 0.9375,
             "status": "finished", "error": None, "attempts": 1,
             "run_dir": "/a/long/output/folder/distill/mnist1d-kd-cnn1d-mlp1d-s0-67fcf43d"}
    print_summary({"metric": "val_top1", "mode": "max", "varied": list(trial["params"]), "trials": [trial],
                   "path": "/a/long/output/folder/tune/kd_temperature/sweep.json"}, top=10)
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80 and "\x1b" not in out
    assert "temperature" in out and "weight" in out and "kd.terms" not in out  # short names
    assert "93.75" in out and "67fcf43d" in out  # the run folder by name (folded where it is long)
    for key in ("RAY_COLOR_PREFIX", "RAY_DEDUP_LOGS"):
        monkeypatch.delenv(key, raising=False)
    plain_logs_off_terminal()  # the output here is not a terminal: Ray's worker lines without colour codes
    assert os.environ["RAY_COLOR_PREFIX"] == "0" and os.environ["RAY_DEDUP_LOGS"] == "0"
