"""Fake CIFAR files in the exact on-disk layout torchvision reads (pickled dicts of uint8 rows)."""
from __future__ import annotations

import pytest

from datamodules.cifar_files import write_random_cifar as write_fake_cifar  # noqa: F401 - used by the tests


def patch_cifar_md5(monkeypatch) -> None:
    """torchvision checks the real files' md5 sums; let fake files through (CIFAR100 subclasses CIFAR10)."""
    import torchvision
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)


@pytest.fixture
def skip_cifar_md5(monkeypatch):
    patch_cifar_md5(monkeypatch)


def fake_cifar_folder(tmp_path_factory, variant: str, n_train: int, n_test: int):
    """Body of a module fixture: a fake CIFAR folder of this size, readable (md5 checks off) while in use."""
    root = tmp_path_factory.mktemp(variant)
    write_fake_cifar(root, variant, n_train=n_train, n_test=n_test)
    with pytest.MonkeyPatch.context() as monkeypatch:
        patch_cifar_md5(monkeypatch)
        yield root


@pytest.fixture(scope="module")
def fake_cifar100(tmp_path_factory):
    """A tiny fake CIFAR-100 folder, readable for the whole test module."""
    yield from fake_cifar_folder(tmp_path_factory, "cifar100", n_train=32, n_test=8)
