"""Datamodules: the real loaders on fake CIFAR files, the procedural sets, splits, and (x, y, index) batches."""
import random

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from datamodules import (CIFAR100DataModule, CIFAR10DataModule, DatasetNotFoundError, EpochSeededRandomSampler,
                         IndexedDataset, MNIST1DDataModule)
from errors import ConfigError
from runs.training import instantiate
from tests.fake_cifar import fake_cifar100, skip_cifar_md5, write_fake_cifar  # noqa: F401 - fixture
from tests.helpers import CFG_DIR


def data_from_config(config_name, data_dir, **overrides):
    node = OmegaConf.merge(OmegaConf.load(f"{CFG_DIR}/data/{config_name}.yaml"), overrides)
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 0, "data": node})
    return instantiate(cfg.data)


def unnormalise(x, module):
    mean = torch.tensor(module.mean).view(3, 1, 1)
    std = torch.tensor(module.std).view(3, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def assert_item(item, shape):
    x, y, index = item
    assert tuple(x.shape) == tuple(shape) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and index.dtype == torch.int64


# -- CIFAR on fake files -------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
def test_fake_cifar_through_the_real_loader(variant, tmp_path, skip_cifar_md5):
    raw = write_fake_cifar(tmp_path, variant, n_train=100, n_test=20)
    dm = data_from_config(variant, tmp_path, val_size=10, num_workers=0, batch_size=16)
    assert (dm.name, dm.num_classes, dm.input_shape) == (variant, 10 if variant == "cifar10" else 100, (3, 32, 32))
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_set) == 90 and len(dm.val_set) == 10 and len(dm.test_set) == 20
    assert not set(dm.train_indices) & set(dm.val_indices)
    assert sorted([*dm.train_indices, *dm.val_indices]) == list(range(100))
    # Val items come from the training files but without augmentation: the eval transform, every time.
    assert dm.val_set.transform is dm.eval_transform and dm.train_set.transform is dm.train_transform
    lowest = (0 - torch.tensor(dm.mean)) / torch.tensor(dm.std)
    highest = (1 - torch.tensor(dm.mean)) / torch.tensor(dm.std)
    # Eval-transformed val/test items map back to the raw file rows their index names.
    for dataset, images, labels in ((dm.val_set, raw["train_images"], raw["train_labels"]),
                                    (dm.test_set, raw["test_images"], raw["test_labels"])):
        for i in range(len(dataset)):
            x, y, index = dataset[i]
            assert_item((x, y, index), (3, 32, 32))
            assert 0 <= y < dm.num_classes and y.item() == labels[index]
            assert (x.amin(dim=(1, 2)) >= lowest - 1e-5).all() and (x.amax(dim=(1, 2)) <= highest + 1e-5).all()
            np.testing.assert_array_equal(unnormalise(x, dm), images[index])
            assert torch.equal(dataset[i][0], x)
    # Training items are augmented (crop + flip) but keep label and index.
    x, y, index = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 3, 32, 32) and torch.equal(y, torch.as_tensor(raw["train_labels"][index.numpy()]))
    assert set(index.tolist()) <= set(dm.train_indices.tolist())


def test_val_size_zero_validates_on_the_test_set(tmp_path, skip_cifar_md5):
    write_fake_cifar(tmp_path, "cifar100", n_train=50, n_test=10)
    dm = data_from_config("cifar100", tmp_path, val_size=0, num_workers=0)
    dm.setup("fit")  # without prepare_data: setup runs it
    assert dm.val_set is dm.test_set and len(dm.train_set) == 50 and len(dm.val_indices) == 0


def test_missing_cifar_offline_names_the_fix(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", offline)
    dm = CIFAR100DataModule(name="cifar100", num_classes=100, input_shape=[3, 32, 32], data_dir=str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as caught:
        dm.setup("fit")
    message = str(caught.value)
    assert "CIFAR-100 not found under" in message and "cifar-100-python" in message
    assert "missing or incomplete: train, test, meta" in message
    assert "could not be downloaded (OSError: network unreachable)" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz" in message
    assert "cifar-100-python/train exists" in message and "data.data_dir=PATH" in message
    assert isinstance(caught.value, RuntimeError)


def test_missing_cifar_without_download(tmp_path):
    dm = CIFAR10DataModule(name="cifar10", num_classes=10, input_shape=[3, 32, 32], data_dir=str(tmp_path),
                           download=False)
    with pytest.raises(DatasetNotFoundError, match=r"CIFAR-10 not found.*data_batch_1.*downloading is off \(data.download=false\)"):
        dm.prepare_data()


@pytest.mark.parametrize("config_name, override, message", [
    ("cifar100", {"num_classes": 10}, r"data.num_classes=10 does not match cifar100 \(100 classes\); remove"),
    ("cifar10", {"input_shape": [1, 32, 32]}, r"data.input_shape=\[1, 32, 32\] does not match cifar10"),
    ("mnist1d", {"num_classes": 5}, r"data.num_classes=5 does not match mnist1d"),
    ("digits", {"name": "mnist1d"}, r"data.name=mnist1d does not match DigitsDataModule"),
])
def test_config_that_contradicts_the_dataset_is_refused(config_name, override, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        data_from_config(config_name, tmp_path, **override)


def test_val_split_that_leaves_nothing_to_train_is_refused(tmp_path):
    dm = data_from_config("synthetic", tmp_path, val_size=1.0)
    with pytest.raises(ConfigError, match="leaves no training data"):
        dm.setup("fit")


# -- procedural and in-memory sets ---------------------------------------------------------------------
def test_mnist1d_sizes_cache_and_global_rng(tmp_path, monkeypatch):
    data_dir = tmp_path  # empty: this test must generate, not find another test's cache
    random.seed(123), np.random.seed(123)
    expected_python, expected_numpy = random.random(), np.random.rand()
    random.seed(123), np.random.seed(123)
    dm = data_from_config("mnist1d", data_dir)
    dm.setup("fit")
    # Generating reseeds numpy/random inside the mnist1d package; the caller's streams must not notice.
    assert (random.random(), np.random.rand()) == (expected_python, expected_numpy)
    assert len(dm.train_set.base) == 4000 and len(dm.test_set) == 1000
    assert len(dm.train_set) == 3500 and len(dm.val_set) == 500
    assert_item(dm.train_set[0], (1, 40))
    x_train, x_test, y_train, y_test = dm._tensors()
    assert set(y_train.unique().tolist()) == set(range(10)) and abs(float(x_train.std()) - 1) < 0.1
    assert dm.cache_path().exists() and dm.cache_path().parent == data_dir / "mnist1d"

    # A second run loads the cache instead of regenerating.
    def regenerate(*args, **kwargs):
        raise AssertionError("regenerated despite the cache")
    monkeypatch.setattr("mnist1d.data.make_dataset", regenerate)
    again = data_from_config("mnist1d", data_dir)
    again.setup("fit")
    assert all(torch.equal(a, b) for a, b in zip(dm._tensors(), again._tensors()))
    # Another generation seed is another dataset, so another cache file.
    other = MNIST1DDataModule(name="mnist1d", num_classes=10, input_shape=[1, 40], data_dir=str(data_dir),
                              generation_seed=7)
    assert other.cache_path() != dm.cache_path()


def test_digits(data_dir):
    dm = data_from_config("digits", data_dir)
    dm.setup("fit")
    assert len(dm.test_set) == 360 and len(dm.train_set.base) == 1797 - 360
    assert len(dm.train_set) + len(dm.val_set) == 1797 - 360 and len(dm.val_set) == round(0.1 * 1437)
    assert_item(dm.train_set[0], (1, 8, 8))
    x_train, x_test, _, _ = dm._tensors()
    assert float(x_train.min()) == 0.0 and float(x_train.max()) == 1.0


def test_synthetic_is_seeded_and_learnable(data_dir):
    from sklearn.linear_model import LogisticRegression

    def arrays(seed, **overrides):
        dm = data_from_config("synthetic", data_dir, generation_seed=seed, val_size=0, **overrides)
        dm.setup("fit")
        return [t.numpy() for t in dm._tensors()]

    first, again, other = arrays(0), arrays(0), arrays(1)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], other[0])
    x_train, x_test, y_train, y_test = first
    assert x_train.shape == (2000, 32) and x_test.shape == (500, 32)
    accuracy = LogisticRegression(max_iter=500).fit(x_train, y_train).score(x_test, y_test)
    assert 1 / 10 + 0.2 < accuracy < 1.0
    shaped = arrays(0, input_shape=[2, 4, 4], num_classes=3, n_train=30, n_test=9)
    assert shaped[0].shape == (30, 2, 4, 4) and set(shaped[2]) <= {0, 1, 2}


# -- sampling, splits, loaders -------------------------------------------------------------------------
def test_epoch_seeded_sampler():
    sampler = EpochSeededRandomSampler(50, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(50)) and list(sampler) == first and len(sampler) == 50
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first and sorted(second) == list(range(50))
    # A fresh sampler (a resumed run) at epoch 1 replays the same order.
    resumed = EpochSeededRandomSampler(50, seed=3)
    resumed.set_epoch(1)
    assert list(resumed) == second
    assert list(EpochSeededRandomSampler(50, seed=4)) != first


def test_split_depends_on_split_seed_only(data_dir):
    a = data_from_config("mnist1d", data_dir, seed=0)
    b = data_from_config("mnist1d", data_dir, seed=1)
    c = data_from_config("mnist1d", data_dir, split_seed=1)
    subset = data_from_config("mnist1d", data_dir, train_subset=100, test_subset=50)
    for dm in (a, b, c, subset):
        dm.setup("fit")
    assert np.array_equal(a.val_indices, b.val_indices) and np.array_equal(a.train_indices, b.train_indices)
    assert not np.array_equal(a.val_indices, c.val_indices)
    # The subset is drawn from what the val split leaves, and leaves the val split alone.
    assert np.array_equal(subset.val_indices, a.val_indices) and len(subset.train_set) == 100
    assert set(subset.train_indices) < set(a.train_indices) and len(subset.test_set) == 50
    assert not np.array_equal(subset.train_indices, np.sort(a.train_indices)[:100])


def test_batches_are_x_y_index_and_an_epoch_covers_the_train_set(data_dir):
    dm = data_from_config("mnist1d", data_dir, train_subset=200, val_size=50, test_subset=30, batch_size=64,
                          eval_batch_size=25)
    dm.setup("fit")
    batches = list(dm.train_dataloader())
    assert [len(batch[0]) for batch in batches] == [64, 64, 64, 8]  # drop_last=False
    for x, y, index in batches:
        assert x.shape[1:] == (1, 40) and y.dtype == torch.int64 and index.dtype == torch.int64
    seen = torch.cat([index for _, _, index in batches]).numpy()
    assert sorted(seen) == sorted(dm.train_indices)
    # The loader's order is the sampler's for (seed, epoch), as Lightning sets it.
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(3)
    expected = EpochSeededRandomSampler(200, seed=0)
    expected.set_epoch(3)
    assert torch.cat([index for _, _, index in loader]).tolist() == dm.train_indices[list(expected)].tolist()
    val_batches, test_batches = list(dm.val_dataloader()), list(dm.test_dataloader())
    assert [len(b[0]) for b in val_batches] == [25, 25] and [len(b[0]) for b in test_batches] == [25, 5]
    assert torch.cat([b[2] for b in val_batches]).tolist() == dm.val_indices.tolist()  # no shuffling
    workers = data_from_config("mnist1d", data_dir, num_workers=1)
    workers.setup("fit")
    assert workers.train_dataloader().persistent_workers and not dm.train_dataloader().persistent_workers


def test_train_pool_hook_filters_the_training_set(data_dir):
    class EvenOnly(MNIST1DDataModule):
        def train_pool_indices(self):
            return self.train_indices[self.train_indices % 2 == 0]

    dm = EvenOnly(name="mnist1d", num_classes=10, input_shape=[1, 40], data_dir=str(data_dir), val_size=500)
    dm.setup("fit")
    assert isinstance(dm.train_set, IndexedDataset) and len(dm.val_set) == 500
    indices = [int(dm.train_set[i][2]) for i in range(len(dm.train_set))]
    assert indices and all(i % 2 == 0 for i in indices) and set(indices) <= set(dm.train_indices.tolist())


def test_random_training_transform_draws_from_seed_epoch_and_example(fake_cifar100):
    """Crops and flips are a function of (seed, epoch, example): a resumed run and any number of loader
    workers see the same pixels (the global RNG, which a restart does not restore, is not used)."""
    import torch
    from datamodules import CIFAR100DataModule

    def epoch_batches(epoch, workers):
        dm = CIFAR100DataModule(name="cifar100", num_classes=100, input_shape=[3, 32, 32], data_dir=str(fake_cifar100),
                                batch_size=8, val_size=0, num_workers=workers, download=False)
        dm.setup("fit")
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        torch.manual_seed(epoch + 100 * workers)  # a different global RNG state each time: it must not matter
        return [(x.clone(), i.clone()) for x, _, i in loader]

    first, again, workers = epoch_batches(1, 0), epoch_batches(1, 0), epoch_batches(1, 2)
    for (x1, i1), (x2, i2), (x3, i3) in zip(first, again, workers):
        assert torch.equal(i1, i2) and torch.equal(x1, x2) and torch.equal(i1, i3) and torch.equal(x1, x3)
    other = epoch_batches(2, 0)
    by_index = {int(i): x for xs, idx in first for x, i in zip(xs, idx)}
    changed = sum(not torch.equal(by_index[int(i)], x) for xs, idx in other for x, i in zip(xs, idx))
    assert changed > len(by_index) // 2  # another epoch, other crops and flips
