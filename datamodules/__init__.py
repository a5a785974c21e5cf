from datamodules.base import DatasetNotFoundError, IndexedDataset, KDDataModule
from datamodules.cifar import CIFAR10DataModule, CIFAR100DataModule
from datamodules.sampling import EpochSeededRandomSampler
from datamodules.tensor_data import DigitsDataModule, MNIST1DDataModule, SyntheticDataModule

__all__ = ["DatasetNotFoundError", "IndexedDataset", "KDDataModule", "CIFAR10DataModule", "CIFAR100DataModule",
           "EpochSeededRandomSampler", "DigitsDataModule", "MNIST1DDataModule", "SyntheticDataModule"]
