"""CIFAR-10 / CIFAR-100 through torchvision, with the standard augmentation recipe."""
from __future__ import annotations

from pathlib import Path

from torchvision import datasets, transforms

from datamodules.base import DatasetNotFoundError, KDDataModule


class CIFARDataModule(KDDataModule):
    dataset_class = datasets.CIFAR10
    folder = "cifar-10-batches-py"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    true_input_shape = (3, 32, 32)

    def __init__(self, *args, download: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.download = download
        normalize = transforms.Normalize(self.mean, self.std)
        self.train_transform = transforms.Compose([transforms.RandomCrop(32, padding=4),
                                                   transforms.RandomHorizontalFlip(), transforms.ToTensor(), normalize])
        self.eval_transform = transforms.Compose([transforms.ToTensor(), normalize])

    def _present(self) -> bool:
        # torchvision's own md5 check of the files, without loading them.
        probe = self.dataset_class.__new__(self.dataset_class)
        probe.root = self.data_dir
        return probe._check_integrity()

    def prepare_data(self) -> None:
        if self._present():
            return
        reason = "download=false"
        if self.download:
            try:
                self.dataset_class(self.data_dir, train=True, download=True)
                self.dataset_class(self.data_dir, train=False, download=True)
                return
            except Exception as error:  # offline: URLError, OSError, ...
                reason = f"{type(error).__name__}: {error}"
        where = Path(self.data_dir) / self.folder
        raise DatasetNotFoundError(
            f"{self.name} not found under {where} and it could not be downloaded ({reason}). Download "
            f"{self.url} on a machine with internet and extract it into {self.data_dir}/ (so that {where} exists), "
            f"or point data.data_dir (or KD_DATA_DIR) at the folder that holds {self.folder}/")

    def load_train(self):
        return self.dataset_class(self.data_dir, train=True, download=False)

    def load_test(self):
        return self.dataset_class(self.data_dir, train=False, download=False)


class CIFAR10DataModule(CIFARDataModule):
    true_num_classes = 10
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFARDataModule):
    dataset_class = datasets.CIFAR100
    folder = "cifar-100-python"
    url = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    true_num_classes = 100
    mean, std = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)
