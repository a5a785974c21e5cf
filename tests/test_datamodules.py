"""Datamodules: the real loaders on fake CIFAR files, the procedural sets, splits, and (x, y, index) batches."""
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules import CIFAR100DataModule, DatasetNotFoundError, EpochSeededRandomSampler
from errors import ConfigError
from tests.fake_cifar import skip_cifar_md5, write_fake_cifar  # noqa: F401 - fixture
from tasks.runs import instantiate
from tests.helpers import CFG_DIR


def data_from_config(name, data_dir, **overrides):
    node = OmegaConf.merge(OmegaConf.load(f"{CFG_DIR}/data/{name}.yaml"), overrides)
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 0, "data": node})
    return instantiate(cfg.data)


def unnormalise(x, module):
    mean = torch.tensor(module.mean).view(3, 1, 1)
    std = torch.tensor(module.std).view(3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_fake_cifar_through_the_real_loader(variant, tmp_path, skip_cifar_md5):
    raw = write_fake_cifar(tmp_path, variant, n_train=100, n_test=20)
    dm = data_from_config(variant, tmp_path, val_size=10, num_workers=0, batch_size=16)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 90 and len(dm.val_set) == 10 and len(dm.test_set) == 20
    assert not set(dm.train_indices) & set(dm.val_indices)
    assert sorted([*dm.train_indices, *dm.val_indices]) == list(range(100))
    # Eval-transformed val/test items map back to the raw file rows their index names.
    for dataset, images, labels in ((dm.val_set, raw["train_images"], raw["train_labels"]),
                                    (dm.test_set, raw["test_images"], raw["test_labels"])):
        for i in range(len(dataset)):
            x, y, index = dataset[i]
            assert x.shape == (3, 32, 32) and y.dtype == torch.int64 and index.dtype == torch.int64
            assert y.item() == labels[index]
            np.testing.assert_array_equal(unnormalise(x, dm), images[index])
    # Training items are augmented (crop + flip) but keep label and index.
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and torch.equal(y, torch.as_tensor(raw["train_labels"][index.numpy()]))


def test_val_size_zero_validates_on_the_test_set(tmp_path, skip_cifar_md5):
    write_fake_cifar(tmp_path, "cifar100", n_train=50, n_test=10)
    dm = data_from_config("cifar100", tmp_path, val_size=0, num_workers=0)
    dm.setup("fit")
    assert dm.val_set is dm.test_set and len(dm.train_set) == 50


def test_missing_cifar_offline_names_the_fix(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    dm = CIFAR100DataModule(name="cifar100", num_classes=100, input_shape=[3, 32, 32], data_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"cifar-100-python.*network unreachable.*cifar-100-python.tar.gz"):
        dm.prepare_data()


def test_wrong_class_count_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="data.num_classes=10 does not match cifar100"):
        data_from_config("cifar100", tmp_path, num_classes=10)


def test_mnist1d_digits_and_synthetic(tmp_path):
    mnist1d = data_from_config("mnist1d", tmp_path, val_size=0)
    mnist1d.setup("fit")
    assert len(mnist1d.train_set) == 4000 and len(mnist1d.test_set) == 1000
    x, y, _ = mnist1d.train_set[0]
    assert x.shape == (1, 40) and 0 <= y < 10
    digits = data_from_config("digits", tmp_path)
    digits.setup("fit")
    assert len(digits.train_set) + len(digits.val_set) + len(digits.test_set) == 1797
    assert digits.train_set[0][0].shape == (1, 8, 8) and 0 <= digits.train_set[0][0].min() <= 1


def test_synthetic_is_seeded_and_learnable(tmp_path):
    from sklearn.linear_model import LogisticRegression

    def arrays(seed):
        dm = data_from_config("synthetic", tmp_path, generation_seed=seed, val_size=0)
        dm.setup("fit")
        return [t.numpy() for t in dm._tensors()]

    first, again, other = arrays(0), arrays(0), arrays(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    x_train, x_test, y_train, y_test = first
    accuracy = LogisticRegression(max_iter=500).fit(x_train, y_train).score(x_test, y_test)
    assert 0.1 + 0.2 < accuracy < 1.0


def test_epoch_seeded_sampler():
    sampler = EpochSeededRandomSampler(50, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    assert list(EpochSeededRandomSampler(50, seed=4)) != first


def test_split_does_not_depend_on_the_shuffling_seed(tmp_path):
    a = data_from_config("mnist1d", tmp_path, seed=0)
    b = data_from_config("mnist1d", tmp_path, seed=1)
    a.setup("fit"), b.setup("fit")
    assert np.array_equal(a.val_indices, b.val_indices)
    x, y, index = next(iter(a.train_dataloader()))
    assert index.dtype == torch.int64 and len(x) == len(y) == len(index) == 128
