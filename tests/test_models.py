"""Every zoo model: forward shape, parameter count against the anchors, and its declared feature taps."""
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from errors import ConfigError
from models import build_model, feature_spec, model_names
from tasks.features import FeatureTaps

ONE_D = {"mlp", "mlp1d", "cnn1d"}
# Millions of parameters at 100 classes, as RepDistiller / mdistiller report them (e.g. the CRD paper's
# and mdistiller's model tables); the CIFAR ResNet depths follow 6n+2 with 16/16/32/64 channels.
PUBLISHED_MILLIONS = {
    "resnet8": 0.08, "resnet14": 0.18, "resnet20": 0.28, "resnet32": 0.47, "resnet44": 0.67, "resnet56": 0.86,
    "resnet110": 1.74, "resnet8x4": 1.23, "resnet32x4": 7.43, "wrn_16_1": 0.18, "wrn_16_2": 0.70,
    "wrn_40_1": 0.57, "wrn_40_2": 2.26, "vgg8": 3.96, "vgg13": 9.46, "mobilenetv2": 0.81,
    "shufflenetv1": 0.95, "shufflenetv2": 1.36, "resnet50_cifar": 23.71,
}


def input_shape(name):
    return (1, 40) if name in ONE_D else (3, 32, 32)


def capture(model, taps, x):
    hooks = FeatureTaps(model, taps)
    logits = model(x)
    features = hooks.pop()
    hooks.remove()
    return logits, features


@pytest.mark.parametrize("name", model_names())
def test_forward_and_feature_taps(name):
    torch.manual_seed(0)
    model = build_model(name, 10, input_shape(name)).eval()
    spec = feature_spec(model)
    stage_taps = [f"stage:{i}" for i in range(len(spec.stages))]
    preact_taps = [f"preact:{i}" for i in range(len(spec.stages))]
    x = torch.randn(2, *input_shape(name))
    with torch.no_grad():
        logits, features = capture(model, [*stage_taps, *preact_taps, "embedding"], x)
    assert logits.shape == (2, 10)
    spatial_dims = 1 if name == "cnn1d" else 2
    sizes = []
    for stage, preact in zip(stage_taps, preact_taps):
        if name in ("mlp", "mlp1d"):
            assert features[stage].dim() == 2
        else:
            assert features[stage].dim() == 2 + spatial_dims
            sizes.append(features[stage].shape[-1])
        assert features[preact].shape == features[stage].shape
    assert sizes == sorted(sizes, reverse=True), "stages must go shallow (large) to deep (small)"
    embedding = features["embedding"]
    assert embedding.dim() == 2
    classifier = model.get_submodule(spec.embedding.split(":")[0])
    torch.testing.assert_close(classifier(embedding), logits)


@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_parameter_counts_match_the_anchors(name):
    count = sum(p.numel() for p in build_model(name, 100).parameters())
    assert count / 1e6 == pytest.approx(PUBLISHED_MILLIONS[name], rel=0.01, abs=0.005)


@pytest.mark.parametrize("name", ["resnet8x4", "wrn_16_2", "vgg8", "shufflenetv1"])
def test_preactivation_taps_hold_negative_values(name):
    model = build_model(name, 100).eval()
    with torch.no_grad():
        _, features = capture(model, ["stage:-1", "preact:-1"], torch.randn(2, 3, 32, 32))
    assert features["preact:-1"].min() < 0 <= features["stage:-1"].min()


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ConfigError, match="unknown model 'resnet9'; valid: .*resnet8x4.*torchvision"):
        build_model("resnet9", 10)


def test_torchvision_model_by_name():
    model = build_model("torchvision.resnet18", 10, (3, 32, 32))
    with torch.no_grad():
        logits, features = capture(model.eval(), ["stage:-1", "embedding"], torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and features["embedding"].shape == (2, 512)
    with pytest.raises(ConfigError, match="unknown torchvision model"):
        build_model("torchvision.not_a_net", 10)


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parent.parent / "cfg" / "model").glob("*.yaml")),
                         ids=lambda p: p.stem)
def test_every_model_config_instantiates(path):
    data = {"num_classes": 7, "input_shape": [1, 40] if path.stem in ONE_D else [3, 32, 32]}
    cfg = OmegaConf.create({"data": data, "model": OmegaConf.load(path)})
    model = instantiate(cfg.model)
    assert model.num_classes == 7 and model.model_name == cfg.model.name
