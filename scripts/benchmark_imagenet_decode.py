"""Training-batch throughput of data=imagenet's decoders on the same JPEG files: PIL in the loader workers (the
default), torchvision.io.decode_jpeg in the workers, and each batch decoded together in the main process on the
CPU and (where there is one) on the GPU by nvjpeg (data.decode_device).

    python scripts/benchmark_imagenet_decode.py                          # random JPEGs of ImageNet's typical size
    python scripts/benchmark_imagenet_decode.py --root /data/imagenet --images 5000 --workers 8
    python scripts/benchmark_data.py --imagenet                          # the same table after the CIFAR one

Images per second over one epoch of the training loader (RandomResizedCrop 224 + flip + normalise, timed after a
warm-up epoch; each batch moved to the GPU as training does, so the decoders compare on what training receives).
It prints, never asserts: the figures depend on the machine, its load and the files.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from datamodules.image_files import write_random_jpegs
from datamodules.imagenet import ImageNetDataModule

# ImageNet's train images average about 400 x 350 pixels (width, height); the generated ones take that size.
TYPICAL_SIZE = (500, 375)


def paths(cuda: bool) -> list[tuple[str, dict]]:
    rows = [("PIL, in the workers", {"decode": "pil"}),
            ("torchvision, in the workers", {"decode": "torchvision"}),
            ("torchvision, batched on cpu", {"decode": "torchvision", "decode_device": "cpu"})]
    if cuda:
        rows.append(("torchvision, batched on cuda (nvjpeg)", {"decode": "torchvision", "decode_device": "cuda"}))
    return rows


def epoch_rate(datamodule: ImageNetDataModule, device: torch.device) -> float:
    """Images per second over one training epoch (after a warm-up one), batches on `device`."""
    loader = datamodule.train_dataloader()

    def one_epoch() -> int:
        count = 0
        for batch in loader:
            x = batch[0]
            if isinstance(x, list):  # the batched paths: what on_before_batch_transfer does in training
                x = datamodule.decode_batch(x, datamodule.train_transform)
            x = x.to(device, non_blocking=True)
            count += len(x)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return count

    one_epoch()
    loader.sampler.set_epoch(1)
    started = time.perf_counter()
    count = one_epoch()
    return count / (time.perf_counter() - started)


def decode_table(root: Path, images: int, batch_size: int, workers: int, image_size: int = 224) -> str:
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    lines = [f"data=imagenet training batches: {images} images from {root}, batch {batch_size}, {workers} workers, "
             f"crops {image_size}, {'cuda ' + torch.cuda.get_device_name(0) if cuda else 'cpu'}, torch "
             f"{torch.__version__}, {torch.get_num_threads()} CPU threads",
             f"{'decoder':<40} {'images/s':>10} {'x PIL':>7}"]
    baseline = None
    for name, settings in paths(cuda):
        datamodule = ImageNetDataModule(name="imagenet", root=str(root), num_classes=None, image_size=image_size,
                                        batch_size=batch_size, num_workers=workers, val_size=0,
                                        train_subset=images, pin_memory=cuda, **settings)
        datamodule.setup("fit")
        rate = epoch_rate(datamodule, device)
        baseline = baseline or rate
        lines.append(f"{name:<40} {rate:>10.0f} {rate / baseline:>6.2f}x")
    return "\n".join(lines)


def table_on_files(root: Path | None, images: int, batch_size: int, workers: int) -> str:
    """The table on `root` (an ImageNet-layout folder), or on random JPEGs written for it."""
    if root is not None:
        return decode_table(root, images, batch_size, workers)
    with tempfile.TemporaryDirectory() as scratch:
        classes = 10
        write_random_jpegs(Path(scratch), classes=classes, train_per_class=-(-images // classes), val_per_class=1,
                           size=TYPICAL_SIZE)
        return decode_table(Path(scratch), images, batch_size, workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=None, help="ImageNet-layout folder (default: random JPEGs)")
    parser.add_argument("--images", type=int, default=512, help="training images per epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads of the main process (default: torch's; on a busy machine 1 avoids "
                             "oversubscription, which the batched cpu path, decoding in the main process, feels)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(table_on_files(args.root, args.images, args.batch_size, args.workers))


if __name__ == "__main__":
    main()
