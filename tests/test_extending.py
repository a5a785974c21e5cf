"""docs/extending.md's recipes, followed from outside the project: a method, a model and a dataset defined in
this file, their configs written into a config folder of their own (added to Hydra's search path), run end to
end through the same function as distill_train.py; and a search space of that folder composes for Ray."""
import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from datamodules.tensor_data import TensorDataModule
from losses import DistillBatch, DistillTerm
import pytest

from models import register_model
from models.registry import _REGISTRY
from runs.configs import compose
from runs.sweep import parameter_space
from runs.training import run_distill


# 1. A method: one term, the unweighted value from a DistillBatch.
class CosineLogitTerm(DistillTerm):
    """1 - cos(student logits, teacher logits), averaged over the batch."""

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        return (1 - F.cosine_similarity(batch.student_logits.float(), batch.teacher_logits.float(), dim=1)).mean()


# 2. A model: a registered constructor fn(num_classes, input_shape, **options) declaring its feature stages.
class TwoLayer(nn.Module):
    def __init__(self, num_classes: int, input_shape, hidden: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU())
        self.head = nn.Linear(hidden, num_classes)
        self.feature_stages = ("body",)   # stage:0 = the hidden layer's output
        self.classifier_name = "head"     # its input is the `embedding` tap

    def forward(self, x):
        return self.head(self.body(x))


def two_layer(num_classes, input_shape, hidden: int = 32):
    return TwoLayer(num_classes, input_shape, hidden)


@pytest.fixture
def registered_two_layer():
    """register_model("test_two_layer") as a decorator would at import, undone after the test so the suite's
    model tests see the project's models only."""
    register_model("test_two_layer")(two_layer)
    yield
    del _REGISTRY["test_two_layer"]


# 3. A dataset: a datamodule that makes (x_train, y_train, x_test, y_test); splits, loaders and indices come free.
class RingsDataModule(TensorDataModule):
    """Points on noisy concentric rings, one ring per class."""

    def __init__(self, *args, n_train: int = 512, n_test: int = 128, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.n_train, self.n_test = n_train, n_test

    def make_arrays(self):
        rng = np.random.default_rng(0)

        def draw(count):
            labels = rng.integers(self.num_classes, size=count)
            angle = rng.uniform(0, 2 * np.pi, size=count)
            radius = 1 + labels + rng.normal(scale=0.1, size=count)
            return np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1), labels

        return (*draw(self.n_train), *draw(self.n_test))


CONFIGS = {
    "kd/cosine.yaml": f"""name: cosine
terms:
  ce: {{_target_: losses.CrossEntropyTerm, weight: 1.0}}
  cosine: {{_target_: {__name__}.CosineLogitTerm, weight: 2.0}}
""",
    "model/test_two_layer.yaml": """_target_: models.build_model
name: test_two_layer
num_classes: ${data.num_classes}
input_shape: ${data.input_shape}
hidden: 32
""",
    "data/rings.yaml": f"""_target_: {__name__}.RingsDataModule
name: rings
num_classes: 3
input_shape: [2]
data_dir: ${{paths.data_dir}}
batch_size: 64
val_size: 64
seed: ${{seed}}
""",
    "search/rings_cosine.yaml": """name: rings_cosine
task: distill
overrides: [~experiment, data=rings, kd=cosine, student=test_two_layer, teacher/model=test_two_layer]
space:
  kd.terms.cosine.weight: {grid: [1.0, 2.0]}
""",
}


def write_config_folder(folder):
    for name, text in CONFIGS.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    os.symlink("model", folder / "student")  # student= and teacher/model= read the same model configs
    os.makedirs(folder / "teacher")
    os.symlink("../model", folder / "teacher" / "model")


def test_a_method_model_and_dataset_added_from_outside_run_end_to_end(tmp_path, registered_two_layer):
    configs = tmp_path / "configs"
    write_config_folder(configs)
    cfg = compose("distill", [f"hydra.searchpath=[file://{configs}]", "~experiment", "data=rings", "kd=cosine",
                              "student=test_two_layer", "teacher/model=test_two_layer", "trainer.max_epochs=1",
                              "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
                              "teacher.recipe.trainer.max_epochs=2", f"paths.output_dir={tmp_path / 'out'}",
                              f"paths.data_dir={tmp_path / 'data'}"])
    record = run_distill(cfg, quiet=True)
    assert record["config"]["kd"]["terms"]["cosine"]["weight"] == 2.0
    assert record["teacher_model"] == "test_two_layer"
    assert 0 <= record["last"]["test/top1"] <= 1 and math.isfinite(record["last"]["test/kl"])
    search = compose("tune", [f"hydra.searchpath=[file://{configs}]", "search=rings_cosine"]).search
    assert set(parameter_space(search.space)) == {"kd.terms.cosine.weight"}
