"""The speed check for one GPU (H100 / H200), in one command, offline, in about 7 minutes:

    python scripts/gpu_check.py --out results/benchmarks/gpu       # CUDA
    python scripts/gpu_check.py --out /tmp/gpu-check --dry-run     # the same code paths on the CPU, tiny sizes
    python scripts/gpu_check.py --help                             # sections and options: benchmarks/gpu_check.py
"""
from benchmarks.gpu_check import main

if __name__ == "__main__":
    main()
