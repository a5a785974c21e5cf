"""CIFAR files of random images in the exact on-disk layout torchvision reads (pickled dicts of uint8 rows):
offline checks and benchmarks (benchmarks/gpu_check.py, benchmarks/data_paths.py) and the tests load them through
the real CIFAR datamodules. They are not the real set, so torchvision's md5 check must let them through."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def _dump(path: Path, content: dict) -> None:
    # Protocol 2 with str keys, as the real files (Python 2 pickles) load under encoding="latin1".
    with open(path, "wb") as handle:
        pickle.dump(content, handle, protocol=2)


def write_random_cifar(root: Path, variant: str = "cifar10", n_train: int = 100, n_test: int = 20,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Writes random images under root/cifar-10-batches-py or root/cifar-100-python.

    Returns the raw arrays: train/test rows as in the files (N x 3072, CHW order), the same images as
    torchvision serves them (N x 32 x 32 x 3), and labels."""
    if variant not in ("cifar10", "cifar100"):
        raise ValueError(f"variant must be cifar10 or cifar100, got {variant}")
    rng = np.random.default_rng(seed)
    classes = 10 if variant == "cifar10" else 100
    arrays = {}
    for split, count in (("train", n_train), ("test", n_test)):
        arrays[f"{split}_rows"] = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, classes, size=count)
    if variant == "cifar10":
        folder = Path(root) / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for batch, rows in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            _dump(folder / f"data_batch_{batch}", {"batch_label": f"training batch {batch} of 5",
                                                   "data": arrays["train_rows"][rows],
                                                   "labels": arrays["train_labels"][rows].tolist()})
        _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "data": arrays["test_rows"],
                                      "labels": arrays["test_labels"].tolist()})
        _dump(folder / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    else:
        folder = Path(root) / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for split in ("train", "test"):
            labels = arrays[f"{split}_labels"]
            _dump(folder / split, {"data": arrays[f"{split}_rows"], "fine_labels": labels.tolist(),
                                   "coarse_labels": (labels // 5).tolist()})
        _dump(folder / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)],
                                "coarse_label_names": [f"coarse{i}" for i in range(20)]})
    # torchvision stores images as CHW rows and serves them as HWC.
    for split in ("train", "test"):
        arrays[f"{split}_images"] = arrays[f"{split}_rows"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return arrays


def accept_unverified_cifar_files() -> None:
    """Lets files that are not the real CIFAR set through torchvision's md5 check, for this process (a script
    reading random files; tests patch it per test instead)."""
    import torchvision
    torchvision.datasets.CIFAR10._check_integrity = lambda self: True  # CIFAR100 subclasses CIFAR10
    torchvision.datasets.cifar.check_integrity = lambda path, md5=None: True
