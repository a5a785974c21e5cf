"""Speed measurements, behind two front doors in scripts/: `scripts/benchmark.py` (training.py: this codebase
against a plain loop and torchdistill, on the configured pair and on a tiny pair that shows the per-step host
overhead; data_paths.py: the data paths) and `scripts/gpu_check.py` (gpu_check.py, its page gpu_report.py).
inputs.py is the data every side reads, timing.py the step timer, torchdistill_side.py side (c)."""
