"""The console contract of a run: by default the composed-run line first, then one progress bar per fit, then the
summary tables, and nothing else (no Lightning INFO lines such as "Restoring states from the checkpoint", no
logger advertisement, no third-party deprecation warnings); `verbose=true` shows the log lines; an error is one
line on stderr. The default run is a real tiny quickstart in a subprocess, so its stdout and stderr are exactly a
user's; the others run in this process."""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from runs.console import configure_console
from runs.summary import teacher_description
from tests.helpers import QUICKSTART_TINY, compose_config

ROOT = Path(__file__).resolve().parent.parent
# What the default console must not show (each seen there before the contract).
NOISE = ("Restoring states", "Loaded model weights", "litlogger", "litmodels", "Tip:", "GPU available",
         "TPU available", "Seed set", "`Trainer(", "deprecated", "Warning", "[INFO]", "training (or reusing)")
LINE = ("distill | experiment recipe/mnist1d | data mnist1d | teacher cnn1d (trained 1 epoch) | student mlp1d | "
        "method kd | 1 epoch | SGD lr 0.05 | 64 training examples | ")


def tiny(outputs: Path, data_dir: Path) -> list[str]:
    return [*QUICKSTART_TINY, f"paths.output_dir={outputs}", f"paths.data_dir={data_dir}"]


def test_default_run_shows_the_line_one_bar_per_fit_and_the_summary(tmp_path, data_dir):
    outputs = tmp_path  # its own folder: the three fits all train here, whichever test ran the quickstart before
    result = subprocess.run([sys.executable, "distill_train.py", *tiny(outputs, data_dir)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[0].startswith(LINE + "with a scratch student | run folder ")
    assert f"run folder {outputs}/distill/" in lines[0]
    # the fits in the order they run, each named, a line per epoch (the output is a pipe, not a terminal), metrics
    # in percent as in the tables, no logger version
    summary = next(i for i, line in enumerate(lines) if line.startswith("distill:"))
    progress = lines[1:summary]
    assert [line.split(" | ")[0] for line in progress] == [
        "teacher cnn1d: epoch 1/1", "scratch student mlp1d: epoch 1/1", "student mlp1d, kd=kd: epoch 1/1"], progress
    assert all(re.search(r" \| val/top1 \d{1,3}\.\d\d( \||$)", line) for line in progress) and "v_num" not in result.stdout
    assert "scratch student" in result.stdout and "kd student" in result.stdout and "wall time" in result.stdout
    assert not [noise for noise in NOISE if noise in result.stdout]


def test_verbose_run_shows_the_log_lines(quickstart_outputs, data_dir, cli, capfd):
    cli("distill_train.py", [*tiny(quickstart_outputs, data_dir), "verbose=true", "rerun=true", "baseline=false"])
    out, err = capfd.readouterr()
    assert out.startswith(LINE)
    assert "Restoring states from the checkpoint" in out + err and "Seed set to 0" in out + err


def test_an_error_is_one_line(quickstart_outputs, data_dir, cli, capfd):
    with pytest.raises(SystemExit) as stopped:
        cli("distill_train.py", [*tiny(quickstart_outputs, data_dir), "kd.terms.kd.temperature=0"])
    out, err = capfd.readouterr()
    assert stopped.value.code == 2 and out.startswith("distill | ")
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "temperature" in err


def test_quiet_console_filters_warnings_and_log_lines_and_verbose_keeps_them():
    handler = logging.StreamHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {h: h.level for h in root.handlers}
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            configure_console(verbose=True)
            warnings.warn("kept", FutureWarning)
            assert handler.level == logging.NOTSET and len(shown) == 1
            configure_console(verbose=False)
            warnings.warn("hidden", FutureWarning)
            warnings.warn("hidden", DeprecationWarning)
            warnings.warn("shown", UserWarning)
        assert [str(w.message) for w in shown] == ["kept", "shown"]
        assert handler.level == logging.WARNING
    finally:
        root.removeHandler(handler)
        for other, level in levels.items():
            other.setLevel(level)


@pytest.mark.parametrize("overrides,described", [
    ([], "cnn1d (trained 40 epochs)"),
    (["teacher.checkpoint=/somewhere/ckpt_epoch_240.pth"], "ckpt_epoch_240.pth"),
    (["teacher=ensemble", "teacher.size=3", "teacher.recipe.trainer.max_epochs=null"], "ensemble 3x cnn1d (trained 100 epochs)"),
    (["teacher=ensemble", "teacher.models=[cnn1d,mlp1d]"], "ensemble cnn1d+mlp1d (trained 40 epochs)"),
    (["teacher=crossfit", "teacher.checkpoints=[a.ckpt,b.ckpt]"], "crossfit 2 checkpoints"),
    (["teacher=cached", "teacher.source=crossfit", "teacher.folds=4"], "cached 4 folds x cnn1d (trained 40 epochs)"),
])
def test_the_line_names_the_teacher_of_every_kind(overrides, described):
    assert teacher_description(compose_config("distill", overrides)) == described


def test_progress_shows_metrics_as_the_tables_do():
    from tasks.callbacks import shown_metrics
    assert shown_metrics({"val/top1": 0.9375, "val/kl": 0.18, "train/loss_step": 2.5, "v_num": 3}) == {
        "val/top1": "93.75", "val/kl": "0.1800", "train/loss_step": "2.5000"}


@pytest.mark.parametrize("script", ["distill_train.py", "train.py", "ray_runner.py"])
def test_help_fits_a_screen(script):
    result = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stderr == ""
    lines = result.stdout.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 120, result.stdout
    if script != "ray_runner.py":  # the groups with their options, the reproduction cells on request
        assert "  kd: " in result.stdout or "  model: " in result.stdout
        assert "python scripts/make_experiments.py --list" in result.stdout

