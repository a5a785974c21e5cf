"""Runs side by side on a CPU: the quickstart's KD step (cnn1d teacher, mlp1d student, batch 128, fp32) timed in
N processes at once, with OpenMP's waiting threads sleeping (OMP_WAIT_POLICY=PASSIVE, what runs/ sets) or with
the OpenMP runtime's default (unset: GNU OpenMP spins a while before it sleeps; torch's Linux wheels use it).

    python scripts/benchmark_sharing.py [--processes 1,4] [--threads 2] [--seconds 10]

Prints the median milliseconds per optimizer step over the processes of each setting. Other work on the machine
changes the figures: say what else ran when you quote them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker(threads: int, seconds: float) -> None:
    import torch
    import torch.nn.functional as F
    from models import build_model
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    teacher, student = build_model("cnn1d", 10, (1, 40)).eval(), build_model("mlp1d", 10, (1, 40))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
    x, y = torch.randn(128, 1, 40), torch.randint(10, (128,))

    def step() -> None:
        with torch.no_grad():
            soft = F.log_softmax(teacher(x) / 4, dim=1)
        logits = student(x)
        kd = F.kl_div(F.log_softmax(logits / 4, dim=1), soft, reduction="batchmean", log_target=True)
        loss = 0.1 * F.cross_entropy(logits, y) + 0.9 * 16 * kd
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(10):
        step()
    steps, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        steps += 1
    print(1000 * (time.perf_counter() - started) / steps)


def measure(processes: int, threads: int, seconds: float, policy: str) -> float:
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env.update({"PYTHONPATH": str(ROOT), **({"OMP_WAIT_POLICY": policy} if policy != "unset" else {})})
    command = [sys.executable, __file__, "--worker", "--threads", str(threads), "--seconds", str(seconds)]
    running = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    return statistics.median(float(p.communicate()[0]) for p in running)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,4", help="comma-separated counts of processes side by side")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads per process (default: cores)")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per process")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.threads, args.seconds)
        return
    print(f"{os.cpu_count()} cores, {args.threads} threads per process, load average before: "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    for count in (int(c) for c in args.processes.split(",")):
        for policy in ("PASSIVE", "unset"):
            print(f"{count} process(es), OMP_WAIT_POLICY={policy}: "
                  f"{measure(count, args.threads, args.seconds, policy):.1f} ms per step (median)", flush=True)


if __name__ == "__main__":
    main()
