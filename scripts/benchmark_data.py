"""Training-batch throughput of the CIFAR data paths: torchvision transforms in a DataLoader (num_workers 0
and 2) against data.device_resident=true (batches cut, cropped, flipped and normalised on the device).

    python scripts/benchmark_data.py                         # fake CIFAR-10-shaped data (random uint8)
    python scripts/benchmark_data.py --data-dir data         # real CIFAR-10 under data/cifar-10-batches-py
    python scripts/benchmark_data.py --images 50000 --batch-size 128

Prints images/s per path (one full epoch each, timed after a warm-up epoch, so worker start-up is not
counted); on CUDA the DataLoader figure includes copying each batch to the GPU, as training does. It prints,
never asserts: the figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch


from datamodules import CIFAR10DataModule
from datamodules.cifar_files import accept_unverified_cifar_files, write_random_cifar


def fake_cifar(folder: Path, images: int) -> None:
    """Random CIFAR-10 files in torchvision's layout, let through its md5 check (they are not the real set)."""
    write_random_cifar(folder, "cifar10", n_train=images, n_test=100)
    accept_unverified_cifar_files()


def epoch_rate(loader, device: torch.device | None, warm_up: bool = True) -> float:
    """Images per second over one epoch of `loader` (after a warm-up epoch), batches on `device`."""
    def one_epoch() -> int:
        count = 0
        for x, y, index in loader:
            if device is not None and x.device != device:  # the DataLoader path: copied as Lightning would
                x, y, index = (t.to(device, non_blocking=True) for t in (x, y, index))
            count += len(x)
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize(device)
        return count

    if warm_up:
        one_epoch()
    if hasattr(loader, "sampler") and hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(1)  # a fresh order, as the next training epoch has
    started = time.perf_counter()
    count = one_epoch()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="folder holding cifar-10-batches-py (default: fake data)")
    parser.add_argument("--images", type=int, default=10000, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--imagenet", action="store_true",
                        help="also time data=imagenet's JPEG decoders (scripts/benchmark_imagenet_decode.py)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir
        if data_dir is None:
            data_dir = scratch
            fake_cifar(Path(scratch), args.images)
        common = dict(name="cifar10", num_classes=10, input_shape=[3, 32, 32], data_dir=data_dir, download=False,
                      batch_size=args.batch_size, val_size=0, train_subset=args.images)
        devices = [torch.device("cpu")]
        if torch.cuda.is_available():
            devices.append(torch.device("cuda", torch.cuda.current_device()))
        print(f"CIFAR-10-shaped training batches: {args.images} images, batch {args.batch_size}, "
              f"{'real' if args.data_dir else 'fake'} data, torch {torch.__version__}, "
              f"{torch.get_num_threads()} CPU threads"
              + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
        rows = []
        for device in devices:
            for workers in args.workers:
                dm = CIFAR10DataModule(**common, num_workers=workers, pin_memory=device.type == "cuda")
                dm.setup("fit")
                rows.append((f"DataLoader, num_workers={workers}", device, epoch_rate(dm.train_dataloader(), device)))
            dm = CIFAR10DataModule(**common, device_resident=True)
            dm.setup("fit")
            loader = dm.train_dataloader()
            loader.device = device  # no trainer here: say where the batches are made
            rows.append(("device_resident", device, epoch_rate(loader, device)))
        baseline = {device: rate for name, device, rate in rows if name == "DataLoader, num_workers=0"}
        print(f"{'path':<28} {'device':<8} {'images/s':>10} {'x workers=0':>12}")
        for name, device, rate in rows:
            print(f"{name:<28} {device.type:<8} {rate:>10.0f} {rate / baseline[device]:>11.1f}x")
    if args.imagenet:
        from scripts.benchmark_imagenet_decode import table_on_files
        print()
        print(table_on_files(None, images=512, batch_size=64, workers=max(args.workers)))


if __name__ == "__main__":
    main()
