"""In-memory datasets that need no download: mnist1d, scikit-learn's digits, a Gaussian mixture."""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from datamodules.base import KDDataModule
from errors import ConfigError


class TensorDataModule(KDDataModule):
    """Subclasses implement `make_arrays() -> (x_train, y_train, x_test, y_test)`; built once per instance."""

    _arrays: list[torch.Tensor] | None = None
    holds_whole_tensors = True

    def make_arrays(self):
        raise NotImplementedError

    def _tensors(self) -> list[torch.Tensor]:
        """[x_train, x_test, y_train, y_test]: x float32 shaped (N, *input_shape), y int64."""
        if self._arrays is None:
            x_train, y_train, x_test, y_test = self.make_arrays()
            self._arrays = [torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(-1, *self.input_shape)
                            for a in (x_train, x_test)]
            self._arrays += [torch.as_tensor(np.asarray(y, dtype=np.int64)) for y in (y_train, y_test)]
        return self._arrays

    def prepare_data(self) -> None:
        pass

    def load_train(self):
        x_train, _, y_train, _ = self._tensors()
        return TensorDataset(x_train, y_train)

    def load_test(self):
        _, x_test, _, y_test = self._tensors()
        return TensorDataset(x_test, y_test)


class MNIST1DDataModule(TensorDataModule):
    """Greydanus 2020's procedural 1-D digits: 4000 train / 1000 test sequences of length 40, 10 classes.

    Made by the mnist1d package's `make_dataset` from its default arguments with `generation_seed` (the
    package default is 42), never downloaded. Values stay as generated: the package already centres the set
    and scales it to unit standard deviation. The arrays are cached under data_dir/mnist1d/, keyed by the
    generation arguments, because generating takes a few seconds."""

    true_name = "mnist1d"
    true_num_classes = 10
    true_input_shape = (1, 40)

    def __init__(self, *args, generation_seed: int | None = 42, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.generation_seed = generation_seed

    def _generation_args(self) -> dict:
        from mnist1d.data import get_dataset_args
        args = get_dataset_args(as_dict=True)
        args.pop("url", None)  # where the package's own pickle lives; irrelevant to what make_dataset produces
        if self.generation_seed is not None:
            args["seed"] = int(self.generation_seed)
        return args

    def cache_path(self) -> Path:
        args = self._generation_args()
        key = hashlib.sha1(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
        return Path(self.data_dir) / "mnist1d" / f"mnist1d_seed{args['seed']}_{key}.npz"

    def _generate(self) -> dict[str, np.ndarray]:
        from mnist1d.data import make_dataset
        from mnist1d.utils import ObjectView
        # make_dataset reseeds the global `random` and `np.random`; restore them so generating (first run)
        # and loading the cache (later runs) leave the experiment's random streams identical.
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            data = make_dataset(ObjectView(self._generation_args()))
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
        return {key: np.asarray(data[key]) for key in ("x", "y", "x_test", "y_test")}

    def _load_or_generate(self) -> dict[str, np.ndarray]:
        path = self.cache_path()
        if path.exists():
            with np.load(path) as cached:
                return {key: cached[key] for key in cached.files}
        arrays = self._generate()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a concurrent run never reads a half-written file.
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as handle:
                np.savez(handle, **arrays)
            os.replace(handle.name, path)
        except OSError:
            pass  # a read-only data_dir only costs regenerating next time
        return arrays

    def prepare_data(self) -> None:
        self._load_or_generate()

    def make_arrays(self):
        arrays = self._load_or_generate()
        return arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]


def grey_strong_view():
    """The strong view (MLKD's, datamodules/two_views.py) of a one-channel image in [0, 1]: CIFAR's RandAugment(2, 10)
    (datamodules/strong_augment.py), which works on RGB, on the image as grey RGB (three equal channels, uint8), then
    back to one channel; no crop or flip, which the digits' weak view does not make either."""
    from torchvision import transforms

    from datamodules.strong_augment import FixMatchRandAugment
    return transforms.Compose([transforms.Lambda(lambda x: x.expand(3, *x.shape[1:])),
                               transforms.ConvertImageDtype(torch.uint8), FixMatchRandAugment(ops=2),
                               transforms.ConvertImageDtype(torch.float32),
                               transforms.Lambda(lambda x: x.mean(dim=0, keepdim=True))])


class DigitsDataModule(TensorDataModule):
    """scikit-learn's 8x8 handwritten digits (1797 images, shipped with the package) as 1x8x8 in [0, 1];
    a test split of `test_size` images drawn by `split_seed`, the rest is the training set."""

    true_name = "digits"
    true_num_classes = 10
    true_input_shape = (1, 8, 8)
    total_images = 1797
    makes_strong_view = True

    def __init__(self, *args, test_size: int = 360, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if not 1 <= int(test_size) < self.total_images:
            raise ConfigError(f"data.test_size must be in [1, {self.total_images}), got {test_size}")
        self.test_size = int(test_size)
        self.strong_transform = grey_strong_view()

    def make_arrays(self):
        from sklearn.datasets import load_digits
        digits = load_digits()
        order = np.random.default_rng(self.split_seed).permutation(len(digits.target))
        test, train = order[: self.test_size], order[self.test_size:]
        images = digits.images / 16.0  # pixel counts 0..16
        return images[train], digits.target[train], images[test], digits.target[test]


class SyntheticDataModule(TensorDataModule):
    """A seeded Gaussian mixture for any `num_classes` and `input_shape`: one unit-covariance Gaussian per
    class around a random mean. Means are N(0, class_sep^2 / (2 dim)) per coordinate, so two classes' means
    lie about `class_sep` apart whatever the dimension and the classes overlap: with the defaults (10
    classes, 32 dims, class_sep 2) logistic regression reaches about 45% test accuracy (chance 10%)."""

    def __init__(self, *args, n_train: int = 2000, n_test: int = 500, class_sep: float = 2.0,
                 generation_seed: int = 0, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if int(n_train) < 1 or int(n_test) < 1 or self.num_classes < 2:
            raise ConfigError(f"synthetic data needs n_train, n_test >= 1 and num_classes >= 2, got "
                              f"n_train={n_train}, n_test={n_test}, num_classes={self.num_classes}")
        self.n_train, self.n_test = int(n_train), int(n_test)
        self.class_sep = float(class_sep)
        self.generation_seed = int(generation_seed)

    def make_arrays(self):
        rng = np.random.default_rng(self.generation_seed)
        dim = math.prod(self.input_shape)
        means = rng.normal(size=(self.num_classes, dim)) * self.class_sep / math.sqrt(2.0 * dim)

        def draw(count: int):
            labels = rng.integers(self.num_classes, size=count)
            return means[labels] + rng.normal(size=(count, dim)), labels

        x_train, y_train = draw(self.n_train)
        x_test, y_test = draw(self.n_test)
        return x_train, y_train, x_test, y_test
