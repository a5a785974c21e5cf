"""Training throughput of this codebase against a plain PyTorch loop and torchdistill, and the data paths:

    python scripts/benchmark.py                      # resnet32x4 -> resnet8x4 at batch 128, and the per-step overhead
    python scripts/benchmark.py --tables overhead    # resnet8 -> resnet8 at batch 4, one thread: the host's work
    python scripts/benchmark.py --tables host        # the same on MLPs, where the host's work is most of the step
    python scripts/benchmark.py --help               # every option; what is measured: benchmarks/training.py
"""
from benchmarks.training import main

if __name__ == "__main__":
    main()
