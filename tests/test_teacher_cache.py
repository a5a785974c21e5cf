"""teacher=cached: outputs computed once per (teacher, data, augmentation draw), looked up by index and view,
never reused for other data; fixed augmented views; mixup_interpolated on cached outputs."""
from __future__ import annotations

import pytest
import torch

from datamodules.mixing import Mixup, MixupInterpolated
from errors import ConfigError
from models.checkpoints import model_from_checkpoint
from runs.training import build_datamodule, run_distill, run_train
from tests.fake_cifar import fake_cifar100  # noqa: F401 - fixture
from tests.helpers import compose_config, tiny_overrides


def distill(data_dir, outputs, *extra):
    return run_distill(compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment", "student=mlp1d",
                                                                "teacher/model=mlp1d", *extra)), quiet=True)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    return tmp_path_factory.mktemp("cache_outputs")


def test_cache_is_built_once_and_reused_only_for_the_same_data(data_dir, outputs):
    first = distill(data_dir, outputs, "teacher=cached", "trainer.max_epochs=2")
    cache = first["teacher_cache"]
    assert not cache["reused"] and cache["views"] == 1 and cache["examples"] == 256
    assert first["teacher_calls"] == 256 and first["teacher_examples"] == 256  # no calls while training
    second = distill(data_dir, outputs, "teacher=cached", "seed=1", f"teacher.checkpoint={first['teacher_checkpoint']}")
    assert second["teacher_cache"]["path"] == cache["path"] and second["teacher_cache"]["reused"]
    assert second["teacher_calls"] == 0
    other_data = distill(data_dir, outputs, "teacher=cached", "data.train_subset=200",
                         f"teacher.checkpoint={first['teacher_checkpoint']}")
    assert other_data["teacher_cache"]["path"] != cache["path"] and not other_data["teacher_cache"]["reused"]

    table = torch.load(cache["path"], weights_only=True)["logits"]
    teacher, _ = model_from_checkpoint(first["teacher_checkpoint"])
    teacher.eval()
    datamodule = build_datamodule(compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment")))
    datamodule.setup("fit")
    x, _, index = datamodule.train_set[7]
    with torch.no_grad():
        assert torch.allclose(table[index, 0], teacher(x.unsqueeze(0))[0], atol=1e-5)
    outside = sorted(set(range(len(table))) - set(datamodule.train_set.indices.tolist()))
    assert torch.isnan(table[outside]).all()  # validation examples are never cached


def test_budget_with_a_cache_calls_the_teacher_budget_times(data_dir, outputs):
    record = distill(data_dir, outputs, "teacher=cached", "teacher.budget=50", "trainer.max_epochs=2")
    assert record["teacher_calls"] == 50 and record["teacher_examples"] == 50


def test_feature_methods_and_interpolated_mixup_need_the_right_teacher(data_dir, outputs):
    with pytest.raises(ConfigError, match="stores the teacher's logits only"):
        distill(data_dir, outputs, "teacher=cached", "kd=rkd")
    with pytest.raises(ConfigError, match="use it with teacher=cached"):
        distill(data_dir, outputs, "augment=mixup_interpolated")
    with pytest.raises(ConfigError, match="needs the teacher's answer on the augmented inputs"):
        distill(data_dir, outputs, "teacher=cached", "augment=mixup")
    record = distill(data_dir, outputs, "teacher=cached", "augment=mixup_interpolated")
    # the cache of the first test is reused, and mixed inputs never reach the teacher: no call at all
    assert record["teacher_cache"]["reused"] and record["teacher_calls"] == 0 and record["teacher_examples"] == 256


def test_interpolation_replays_the_inputs_draw():
    inputs = torch.eye(6)
    mixed, _, _ = MixupInterpolated()(inputs, torch.zeros(6, dtype=torch.long), 2, seed=3, step=4)
    outputs = torch.randn(6, 5)
    # outputs mixed with the same partners and weights as the inputs: outputs^T-weighted by the mixed rows
    logits = MixupInterpolated(teacher_mix="logits").interpolate(outputs, inputs, seed=3, step=4)
    assert torch.allclose(logits, mixed @ outputs, atol=1e-6)
    probabilities = MixupInterpolated().interpolate(outputs, inputs, seed=3, step=4)  # CKD's: the softmaxes mixed
    assert torch.allclose(probabilities.exp(), mixed @ outputs.softmax(dim=1), atol=1e-6)
    assert torch.allclose(Mixup().interpolate(outputs, inputs, seed=3, step=4), mixed @ outputs, atol=1e-6)


def test_augmented_data_caches_fixed_views(fake_cifar100, tmp_path):
    overrides = ["data=cifar100", "data.val_size=0", "data.batch_size=8", "data.num_workers=0", "data.train_subset=16",
                 "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger",
                 f"paths.data_dir={fake_cifar100}", f"paths.output_dir={tmp_path}"]
    teacher = run_train(compose_config("train", [*overrides, "model=resnet8"]), quiet=True)
    record = run_distill(compose_config("distill", [*overrides, "~experiment", "student=resnet8", "teacher=cached",
                                                    "teacher/model=resnet8", "teacher.views=3",
                                                    f"teacher.checkpoint={teacher['checkpoints']['last']}"]),
                         quiet=True)
    assert record["teacher_cache"]["views"] == 3 and record["teacher_calls"] == 16 * 3

    datamodule = build_datamodule(compose_config("distill", [*overrides, "~experiment"]))
    datamodule.setup("fit")
    assert datamodule.augments
    views = datamodule.use_fixed_views(3, seed=0)
    first, again = views[5], views[5]
    assert torch.equal(first[0], again[0]) and first[2] == again[2]  # a view is the same image every time
    assert not all(torch.equal(views[3 * 1 + v][0], views[3 * 1][0]) for v in range(1, 3))  # views differ
    example, view = divmod(int(first[2]), 3)
    assert example == datamodule.train_set.indices[1] and view == 2

    table = torch.load(record["teacher_cache"]["path"], weights_only=True)["logits"]
    model, _ = model_from_checkpoint(teacher["checkpoints"]["last"])
    model.eval()
    with torch.no_grad():
        assert torch.allclose(table[example, view], model(first[0].unsqueeze(0))[0], atol=1e-4)

    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(1)
    positions = list(loader.sampler)
    assert sorted(p // 3 for p in positions) == list(range(16))  # every example once per epoch, in some view


def test_feature_methods_are_never_cached_automatically(data_dir, outputs):
    # AT's stages (null: all but the stem) are settled only once both models are known: it still reads
    # teacher features, so the teacher must not be replaced by its cached outputs
    record = distill(data_dir, outputs, "kd=at", "teacher/model=cnn1d", "student=cnn1d")
    assert "teacher_cache" not in record and record["teacher_calls"] == 256
