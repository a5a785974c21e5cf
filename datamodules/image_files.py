"""Folders of random JPEG images in torchvision's ImageFolder / ImageNet layout (root/train/<class>/*.JPEG,
root/val/<class>/*.JPEG): offline checks and benchmarks of the image-folder data paths (data=imagenet,
data=image_folder, scripts/benchmark_imagenet_decode.py) and the tests read them through the real datamodules."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_random_jpegs(root: Path, classes: int = 3, train_per_class: int = 4, val_per_class: int = 2,
                       size: tuple[int, int] = (48, 40), seed: int = 0, quality: int = 90) -> Path:
    """Writes smooth random RGB images (JPEG's typical content: blocks of colour, not white noise) of `size`
    (width, height) as class folders n0000000<i>; returns `root`."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for label in range(classes):
            folder = Path(root) / split / f"n{label:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                coarse = rng.integers(0, 256, size=(max(height // 8, 1), max(width // 8, 1), 3), dtype=np.uint8)
                image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR)
                image.save(folder / f"{split}_{label}_{i}.JPEG", quality=quality)
    return Path(root)
