"""Training-batch throughput of the CIFAR data paths: torchvision transforms in a DataLoader (num_workers 0
and 2) against data.device_resident=true (batches cut, cropped, flipped and normalised on the device).

    python scripts/benchmark.py --tables data                 # fake CIFAR-10-shaped data (random uint8)
    python scripts/benchmark.py --tables data --data-dir data # real CIFAR-10 under data/cifar-10-batches-py
    python scripts/benchmark.py --tables data --data-images 50000 --batch 128

Gives images/s per path (one full epoch each, timed after a warm-up epoch, so worker start-up is not
counted); on CUDA the DataLoader figure includes copying each batch to the GPU, as training does. It prints,
never asserts: the figures depend on the machine and its load.
"""
from __future__ import annotations

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


def data_table(data_dir: str | None, images: int, batch_size: int, workers: list[int],
               threads: int | None) -> dict:
    """{"setting", "rows", "markdown"}: each path's images/s on the CPU and, where there is one, the GPU."""
    if threads:
        torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as scratch:
        if data_dir is None:
            fake_cifar(Path(scratch), images)
        common = dict(name="cifar10", num_classes=10, input_shape=[3, 32, 32], data_dir=data_dir or scratch,
                      download=False, batch_size=batch_size, val_size=0, train_subset=images)
        devices = [torch.device("cpu")]
        if torch.cuda.is_available():
            devices.append(torch.device("cuda", torch.cuda.current_device()))
        setting = (f"CIFAR-10-shaped training batches: {images} images, batch {batch_size}, "
                   f"{'real' if data_dir else 'fake'} data, torch {torch.__version__}, "
                   f"{torch.get_num_threads()} CPU threads"
                   + (f", {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
        rows = []
        for device in devices:
            for count in workers:
                dm = CIFAR10DataModule(**common, num_workers=count, pin_memory=device.type == "cuda")
                dm.setup("fit")
                rows.append({"path": f"DataLoader, num_workers={count}", "device": device.type,
                             "images_per_s": epoch_rate(dm.train_dataloader(), device)})
            dm = CIFAR10DataModule(**common, device_resident=True)
            dm.setup("fit")
            loader = dm.train_dataloader()
            loader.device = device  # no trainer here: say where the batches are made
            rows.append({"path": "device_resident", "device": device.type, "images_per_s": epoch_rate(loader, device)})
    baseline = {r["device"]: r["images_per_s"] for r in rows if r["path"] == "DataLoader, num_workers=0"}
    lines = [setting, "", "| path | device | images/s | vs DataLoader, 0 workers |", "|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['device']} | {r['images_per_s']:,.0f} | "
              f"{r['images_per_s'] / baseline[r['device']]:.1f}x |" for r in rows]
    return {"setting": setting, "rows": rows, "markdown": "\n".join(lines)}
