"""CIFAR-10 / CIFAR-100 through torchvision, with the standard augmentation recipe (random 32x32 crop of
the 4-padded image, horizontal flip) and per-channel normalisation."""
from __future__ import annotations

import os
from typing import Sequence

import torch
from torchvision import datasets, transforms

from datamodules.base import DatasetNotFoundError, KDDataModule
from datamodules.strong_augment import FixMatchRandAugment
from errors import ConfigError


class CIFARDataModule(KDDataModule):
    dataset_class = datasets.CIFAR10
    title = "CIFAR-10"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    true_input_shape = (3, 32, 32)
    holds_whole_tensors = True
    makes_strong_view = True

    def __init__(self, *args, download: bool = True, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.download = bool(download)
        if (mean is None) != (std is None) or (mean is not None and not (len(mean) == len(std) == 3 and min(std) > 0)):
            raise ConfigError(f"data.mean and data.std go together, three values each, std > 0 (e.g. 0.5,0.5,0.5 for "
                              f"both maps pixels to [-1, 1]); got mean={mean}, std={std}")
        if mean is not None:  # instead of the data set's own per-channel statistics
            self.mean, self.std = tuple(float(v) for v in mean), tuple(float(v) for v in std)
        normalize = transforms.Normalize(self.mean, self.std)
        self.train_transform = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
        self.eval_transform = transforms.Compose([transforms.ToTensor(), normalize])
        # MLKD's strong view (Jin-Ying/Multi-Level-Logit-Distillation mdistiller/dataset/cifar100.py): its own crop
        # and flip, then RandAugment(2, 10) on the uint8 image, then ToTensor's scaling and the normalisation.
        self.strong_transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.PILToTensor(),
            FixMatchRandAugment(ops=2), transforms.ConvertImageDtype(torch.float32), normalize])

    @property
    def folder(self) -> str:
        return os.path.join(self.data_dir, self.dataset_class.base_folder)

    def _present(self) -> bool:
        # torchvision's own md5 check of the data files, without loading them (tests patch it for fake files).
        probe = self.dataset_class.__new__(self.dataset_class)
        probe.root = self.data_dir
        return probe._check_integrity()

    def _missing_files(self) -> list[str]:
        """Files absent or failing their md5 sum, for the error message."""
        from torchvision.datasets.cifar import check_integrity
        cls = self.dataset_class
        expected = [*cls.train_list, *cls.test_list, [cls.meta["filename"], cls.meta["md5"]]]
        return [name for name, md5 in expected if not check_integrity(os.path.join(self.folder, name), md5)]

    def prepare_data(self) -> None:
        """Downloads only when files are missing; offline, fails with what to fetch and where to put it."""
        if self._present():
            return
        failure = "downloading is off (data.download=false)"
        if self.download:
            try:
                self.dataset_class(self.data_dir, train=True, download=True)
                self.dataset_class(self.data_dir, train=False, download=True)
                return
            except Exception as error:  # noqa: BLE001 - offline shows up as URLError, OSError, timeouts, ...
                failure = f"it could not be downloaded ({type(error).__name__}: {error})"
        cls = self.dataset_class
        marker = os.path.join(self.folder, cls.train_list[0][0])
        raise DatasetNotFoundError(
            f"{self.title} not found under {self.folder} (missing or incomplete: {', '.join(self._missing_files())}) "
            f"and {failure}. Download {cls.url} on a machine with internet and extract "
            f"it into {self.data_dir}/ (so that {marker} exists), or set data.data_dir=PATH (or KD_DATA_DIR) to the "
            f"folder that holds {cls.base_folder}/.")

    def load_train(self):
        return self.dataset_class(self.data_dir, train=True, download=False)

    def load_test(self):
        return self.dataset_class(self.data_dir, train=False, download=False)


class CIFAR10DataModule(CIFARDataModule):
    true_name = "cifar10"
    true_num_classes = 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFARDataModule):
    dataset_class = datasets.CIFAR100
    title = "CIFAR-100"
    true_name = "cifar100"
    true_num_classes = 100
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
