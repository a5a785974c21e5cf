"""data.device_resident: the same splits, indices, labels and order as the DataLoader path, the torchvision
pipeline's pixels where nothing is random, the torchvision augmentation's distribution where it is, seeded
draws, and whole runs through Lightning (epoch order, resume, records)."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision.transforms.functional as TF
from omegaconf import OmegaConf
from PIL import Image
from scipy import stats
from torch.utils.data import DataLoader
from torchvision import transforms

from datamodules import EpochSeededRandomSampler, IndexedDataset
from datamodules.sampling import ProcessShard
from datamodules.device_data import BatchTransform, DeviceBatches, ResidentTensors, crop_and_flip
from errors import ConfigError
from runs.training import instantiate, run_distill, run_train
from tests.fake_cifar import fake_cifar100, fake_cifar_folder  # noqa: F401 - fixture
from tests.helpers import CFG_DIR, KillAtEpoch, SimulatedKill, compose_config


def data_module(config_name, data_dir, **overrides):
    node = OmegaConf.merge(OmegaConf.load(f"{CFG_DIR}/data/{config_name}.yaml"), overrides)
    cfg = OmegaConf.create({"paths": {"data_dir": str(data_dir)}, "seed": 0, "data": node})
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return dm


def batches(loader, epoch=None):
    if epoch is not None:
        loader.sampler.set_epoch(epoch)
    return list(loader)


def assert_same_batches(normal, device, compare_x=True):
    assert len(normal) == len(device)
    for (xa, ya, ia), (xb, yb, ib) in zip(normal, device):
        assert torch.equal(ia, ib) and torch.equal(ya, yb)
        assert ib.dtype == yb.dtype == torch.int64 and xb.dtype == torch.float32 and xa.shape == xb.shape
        if compare_x:
            assert torch.equal(xa, xb)


# -- the same data as the DataLoader path ------------------------------------------------------------
def test_cifar_splits_indices_labels_and_order_match_the_dataloader_path(fake_cifar100):
    common = dict(val_size=8, batch_size=8, num_workers=0)
    normal = data_module("cifar100", fake_cifar100, **common)
    device = data_module("cifar100", fake_cifar100, device_resident=True, **common)
    assert device.device_resident and not normal.device_resident
    for name in ("train_indices", "val_indices"):
        np.testing.assert_array_equal(getattr(normal, name), getattr(device, name))
    for name in ("train_set", "val_set", "test_set"):
        np.testing.assert_array_equal(getattr(normal, name).indices, getattr(device, name).indices)
    train = device.train_dataloader()
    assert isinstance(train, DeviceBatches) and len(train) == 3  # 24 training examples, drop_last False
    # Same order, labels and indices every epoch; pixels differ only by the crop/flip draws.
    for epoch in (0, 1):
        assert_same_batches(batches(normal.train_dataloader(), epoch), batches(train, epoch), compare_x=False)
    # Validation (held-out training rows) and test: unaugmented, so pixel for pixel the torchvision pipeline's.
    assert_same_batches(list(normal.val_dataloader()), list(device.val_dataloader()))
    assert_same_batches(list(normal.test_dataloader()), list(device.test_dataloader()))


@pytest.mark.parametrize("config_name", ["mnist1d", "digits", "synthetic"])
def test_tensor_data_batches_are_the_dataloader_batches(config_name, data_dir):
    # mnist1d generated as usual (once per session) in the session's data folder
    common = dict(train_subset=300, val_size=100, test_subset=100, batch_size=64)
    normal = data_module(config_name, data_dir, **common)
    device = data_module(config_name, data_dir, device_resident=True, **common)
    np.testing.assert_array_equal(normal.train_set.indices, device.train_set.indices)
    np.testing.assert_array_equal(normal.val_indices, device.val_indices)
    for epoch in (0, 3):
        assert_same_batches(batches(normal.train_dataloader(), epoch), batches(device.train_dataloader(), epoch))
    assert_same_batches(list(normal.val_dataloader()), list(device.val_dataloader()))
    assert_same_batches(list(normal.test_dataloader()), list(device.test_dataloader()))


@pytest.fixture(scope="module")
def fake_cifar10(tmp_path_factory):
    yield from fake_cifar_folder(tmp_path_factory, "cifar10", n_train=60, n_test=16)


def test_unaugmented_train_batches_equal_the_eval_transform_pipeline(fake_cifar10):
    dm = data_module("cifar10", fake_cifar10, val_size=10, batch_size=16, num_workers=0, device_resident=True)
    loader = dm.train_dataloader()
    loader.augment = False
    loader.sampler.set_epoch(2)
    reference = DataLoader(IndexedDataset(dm.train_set.base, dm.train_set.indices, dm.eval_transform),
                           batch_size=16, sampler=EpochSeededRandomSampler(len(dm.train_set), dm.seed))
    reference.sampler.set_epoch(2)
    assert_same_batches(list(reference), list(loader))


# -- seeding -------------------------------------------------------------------------------------------
def test_draws_are_a_function_of_seed_epoch_and_batch(fake_cifar10):
    def loader(seed):
        return data_module("cifar10", fake_cifar10, val_size=10, batch_size=16, num_workers=0,
                           device_resident=True, seed=seed).train_dataloader()

    first, again, other_seed = loader(0), loader(0), loader(1)
    epoch0 = batches(first, 0)
    assert_same_batches(epoch0, batches(again, 0))                   # two loaders, same seed: the same batches
    assert_same_batches(epoch0, batches(first, 0))                   # and the same loader run again
    epoch1 = batches(first, 1)
    assert not torch.equal(epoch0[0][2], epoch1[0][2])               # another epoch: another order
    assert_same_batches(epoch1, batches(loader(0), 1))               # a fresh loader set to epoch 1 replays it
    assert not torch.equal(batches(other_seed, 0)[0][2], epoch0[0][2])
    # The same images in the same order: the crops and flips change with the seed and with the epoch.
    def crops(seed, epoch):
        loader = DeviceBatches(first.resident, torch.arange(16).repeat(4), 16, first.transform, FixedOrder(64), seed)
        return torch.cat([x for x, _, _ in batches(loader, epoch)])

    reference = crops(0, 0)
    assert torch.equal(reference, crops(0, 0))
    assert not torch.equal(reference, crops(1, 0)) and not torch.equal(reference, crops(0, 1))


def test_processes_share_device_batches_and_draw_apart(fake_cifar10):
    """Under DDP each process serves its share (the datamodule's ProcessShard): at every step the two shares
    are the one-process batch of twice the size, evaluation splits without repeats, and the two processes'
    crops come from different batch draws."""
    def loaders(processes, rank, batch_size):
        dm = data_module("cifar10", fake_cifar10, val_size=13, batch_size=batch_size, eval_batch_size=4,
                         num_workers=0, device_resident=True)
        dm.trainer = SimpleNamespace(world_size=processes, global_rank=rank,
                                     strategy=SimpleNamespace(root_device=torch.device("cpu")))
        return dm.train_dataloader(), dm.val_dataloader()

    (one, _), *shares = loaders(1, 0, 16), loaders(2, 0, 8), loaders(2, 1, 8)
    train = [batches(loader, 2) for loader, _ in shares]
    assert len(train[0]) == len(train[1]) == len(one)
    steps = [(torch.cat([a, b]).tolist(), both.tolist())
             for (_, _, a), (_, _, b), (_, _, both) in zip(*train, batches(one, 2))]
    assert all(together == alone for together, alone in steps[:-1])
    together, alone = steps[-1]  # 47 examples: the last step's 15 are topped up with a repeat of the epoch's first
    assert together == alone + steps[0][1][:1]
    held_out = [torch.cat([i for _, _, i in batches(val)]) for _, val in shares]
    assert sorted(torch.cat(held_out).tolist()) == sorted(shares[0][1].rows.tolist())  # 13 examples, once each
    # Images 0..7 twice, so both processes get images 0..7: only the crop and flip draws can differ.
    rank0 = shares[0][0]
    same_images = [DeviceBatches(rank0.resident, torch.arange(8).repeat(2), 8, rank0.transform,
                                 ProcessShard(FixedOrder(16), 16, rank, 2, 8)) for rank in (0, 1)]
    crops = [batches(loader, 0)[0] for loader in same_images]
    assert torch.equal(crops[0][2], crops[1][2]) and not torch.equal(crops[0][0], crops[1][0])


class FixedOrder:
    """A sampler that takes the epoch but keeps one order."""

    def __init__(self, length: int) -> None:
        self.length, self.epoch = length, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(range(self.length))

    def __len__(self) -> int:
        return self.length


# -- the augmentation: exact for given draws, torchvision's distribution -------------------------------
@pytest.mark.parametrize("shape", [(3, 32, 32), (2, 24, 20)])
def test_crop_and_flip_is_torchvision_crop_and_flip_for_the_same_draws(shape):
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, *shape), dtype=torch.uint8, generator=generator)
    offsets = torch.randint(0, 9, (40, 2), generator=generator)
    flips = torch.rand(40, generator=generator) < 0.5
    out = crop_and_flip(images, 4, offsets, flips)
    for image, (i, j), flip, got in zip(images, offsets.tolist(), flips.tolist(), out):
        expected = TF.crop(TF.pad(image, [4]), i, j, shape[1], shape[2])
        assert torch.equal(got, TF.hflip(expected) if flip else expected)


def coordinate_image() -> np.ndarray:
    """32x32 RGB: red = row + 1, green = column + 1, blue = 255, so padding (0) shows and a crop's offsets
    and flip can be read back from its pixels."""
    rows, cols = np.meshgrid(np.arange(32), np.arange(32), indexing="ij")
    return np.stack([rows + 1, cols + 1, np.full_like(rows, 255)], axis=-1).astype(np.uint8)


def decode(crops: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row offset, column offset, flipped) of uint8 crops (N, 3, 32, 32) of the 4-padded coordinate image;
    checks each crop is exactly that window of the padded image."""
    crops = crops.numpy().astype(np.int64)
    i = crops[:, 0, 16, 16] - 13                                   # output row 16 = padded row i + 16
    left, right = crops[:, 1, 16, 15], crops[:, 1, 16, 16]
    flipped = right < left
    j = np.minimum(left, right) - 12                               # either way, the pair spans columns j+12, j+13
    padded = np.pad(coordinate_image(), ((4, 4), (4, 4), (0, 0))).transpose(2, 0, 1)
    windows = np.stack([padded[:, a:a + 32, b:b + 32] for a in range(9) for b in range(9)])  # (81, 3, 32, 32)
    expected = windows[i * 9 + j]
    expected[flipped] = expected[flipped][..., ::-1]
    assert np.array_equal(crops, expected)  # every crop is exactly its window of the padded image
    return i, j, flipped


def assert_uniform(i, j, flipped):
    assert i.min() >= 0 and i.max() <= 8 and j.min() >= 0 and j.max() <= 8
    counts = np.bincount(i * 9 + j, minlength=81)
    assert stats.chisquare(counts).pvalue > 0.001, counts
    assert abs(flipped.mean() - 0.5) < 4 * np.sqrt(0.25 / len(flipped))
    return counts


def test_crop_offsets_and_flips_follow_torchvision_s_distribution():
    samples = 4050
    normalise = transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    cifar_train = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor(), normalise])
    spec = BatchTransform.from_torchvision(cifar_train, (3, 32, 32))
    assert spec == BatchTransform(4, 0.5, True, normalise.mean, normalise.std)
    # The device path: batches of the same image, each batch seeded by (seed, epoch, batch).
    image = torch.from_numpy(coordinate_image()).permute(2, 0, 1).unsqueeze(0)
    resident = ResidentTensors(image, torch.zeros(1, dtype=torch.int64))
    loader = DeviceBatches(resident, torch.zeros(samples, dtype=torch.int64), 256, spec, seed=3)
    x = torch.cat([x for x, _, _ in loader])
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in (normalise.mean, normalise.std))
    device_counts = assert_uniform(*decode(((x * std + mean) * 255).round().to(torch.uint8)))
    # torchvision's own transforms on the same image.
    torch.manual_seed(0)
    pil = Image.fromarray(coordinate_image())
    reference = transforms.Compose(cifar_train.transforms[:2] + [transforms.PILToTensor()])
    torchvision_counts = assert_uniform(*decode(torch.stack([reference(pil) for _ in range(samples)])))
    # The two offset histograms agree with each other too.
    assert stats.chi2_contingency(np.stack([device_counts, torchvision_counts])).pvalue > 0.001


# -- bad input ---------------------------------------------------------------------------------------------
def test_device_resident_on_a_file_dataset_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="data.device_resident=false"):
        data_module("imdb", tmp_path, device_resident=True)
    with pytest.raises(ConfigError, match="true or false"):
        data_module("digits", tmp_path, device_resident="yes")


# -- through Lightning -------------------------------------------------------------------------------------
class BatchLog(pl.Callback):
    """The training batches (index, input checksum) per epoch, where they were, and the final weights."""

    def __init__(self) -> None:
        self.batches: dict[int, list[tuple[torch.Tensor, float]]] = {}
        self.devices: set[tuple[torch.device, torch.device]] = set()
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches.setdefault(trainer.current_epoch, []).append((batch[2].cpu(), float(batch[0].double().sum())))
        self.devices.add((batch[0].device, pl_module.device))

    def on_train_end(self, trainer, pl_module) -> None:
        # Compared here, not via last.ckpt: Lightning 2.6 rewrites last.ckpt only when a best checkpoint is saved.
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


def few_steps(data_dir, outputs, *extra):
    return ["data=cifar10", "data.val_size=0", "data.batch_size=8", "data.num_workers=0", "trainer.max_epochs=1",
            "trainer.limit_train_batches=1", "+trainer.num_sanity_val_steps=0", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false", "~logger", f"paths.data_dir={data_dir}",
            f"paths.output_dir={outputs}", *extra]


def device_train_config(data_dir, outputs, *extra):
    return compose_config("train", few_steps(data_dir, outputs, "model=resnet8", "data.device_resident=true",
                                             "trainer.max_epochs=2", *extra))


@pytest.fixture(scope="module")
def device_run(fake_cifar10, tmp_path_factory):
    """Two epochs of resnet8 on device batches: (outputs folder, record, batch log)."""
    outputs = tmp_path_factory.mktemp("outputs")
    log = BatchLog()
    return outputs, run_train(device_train_config(fake_cifar10, outputs), quiet=True, callbacks=[log]), log


def test_train_and_distill_run_on_device_batches(device_run, fake_cifar10):
    outputs, record, log = device_run
    normal = run_train(compose_config("train", few_steps(fake_cifar10, outputs, "model=resnet8")), quiet=True)
    assert record["config"]["data"]["device_resident"] is True and record["run_dir"] != normal["run_dir"]
    assert record.keys() == normal.keys() and record["epochs"] == 2 and record["train_samples_per_s"] > 0
    for split in ("last", "best"):
        assert record[split].keys() == normal[split].keys()
        assert all(0.0 <= record[split][k] <= 1.0 for k in ("test/top1", "test/top5", "val/top1"))
    assert log.devices == {(torch.device("cpu"), torch.device("cpu"))}
    # Lightning set each epoch on the loader's sampler: the batches are those of a loader set to that epoch.
    dm = data_module("cifar10", fake_cifar10, val_size=0, batch_size=8, num_workers=0, device_resident=True)
    for epoch in (0, 1):
        expected = batches(dm.train_dataloader(), epoch)[:1]
        assert [(index.tolist(), total) for index, total in log.batches[epoch]] == \
               [(index.tolist(), float(x.double().sum())) for x, _, index in expected]
    assert log.batches[0][0][0].tolist() != log.batches[1][0][0].tolist()
    distilled = run_distill(compose_config("distill", few_steps(
        fake_cifar10, outputs, "~experiment", "kd=kd", "student=resnet8", "teacher/model=resnet8",
        f"teacher.checkpoint={record['checkpoints']['best']}", "data.device_resident=true")), quiet=True)
    assert distilled["epochs"] == 1 and 0.0 <= distilled["last"]["test/top1"] <= 1.0
    assert distilled["last"]["test/kl"] >= 0


def test_killed_run_resumes_with_the_same_batches(device_run, fake_cifar10):
    outputs, _, straight = device_run
    with pytest.raises(SimulatedKill):
        run_train(device_train_config(fake_cifar10, outputs, "run_name=killed"), quiet=True,
                  callbacks=[KillAtEpoch(1)])
    resumed = BatchLog()
    record = run_train(device_train_config(fake_cifar10, outputs, "run_name=killed", "resume=true"), quiet=True,
                       callbacks=[resumed])
    assert record["resumed_from"].endswith("last.ckpt") and list(resumed.batches) == [1]
    assert [(i.tolist(), total) for i, total in resumed.batches[1]] == \
           [(i.tolist(), total) for i, total in straight.batches[1]]  # the same order and the same crops
    assert straight.weights.keys() == resumed.weights.keys()
    assert all(torch.equal(straight.weights[k], resumed.weights[k]) for k in straight.weights)


def test_own_normalisation_maps_pixels_to_the_unit_cube_on_both_paths(fake_cifar100):
    common = dict(val_size=8, batch_size=8, num_workers=0, mean=[0.5] * 3, std=[0.5] * 3)
    normal = data_module("cifar100", fake_cifar100, **common)
    device = data_module("cifar100", fake_cifar100, device_resident=True, **common)
    x = next(iter(normal.test_dataloader()))[0]
    raw = torch.as_tensor(normal.test_set.base.data[normal.test_set.indices[:8]]).permute(0, 3, 1, 2) / 255
    torch.testing.assert_close(x, raw * 2 - 1)  # (pixel - 0.5) / 0.5, independent of torchvision's Normalize
    assert_same_batches(list(normal.test_dataloader()), list(device.test_dataloader()))
    with pytest.raises(ConfigError, match="data.mean and data.std go together"):
        data_module("cifar100", fake_cifar100, mean=[0.5] * 3)
