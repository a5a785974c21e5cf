"""Runs side by side share the cores: every entry point sets OMP_WAIT_POLICY=PASSIVE (runs/__init__.py) before
torch loads its OpenMP runtime, which reads it once."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_entry_points_set_passive_waiting_before_torch_loads():
    code = ("import sys, distill_train, train, ray_runner\n"
            "assert 'torch' not in sys.modules, 'an entry point loads torch before runs/ sets the wait policy'\n"
            "import runs, os\n"
            "print(os.environ['OMP_WAIT_POLICY'])")
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "PASSIVE"
    kept = subprocess.run([sys.executable, "-c", "import runs, os; print(os.environ['OMP_WAIT_POLICY'])"], cwd=ROOT,
                          env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True, timeout=120)
    assert kept.stdout.strip() == "ACTIVE"  # the user's own choice stays
