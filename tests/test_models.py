"""Every zoo model: forward shape, parameter counts, its declared feature taps (captured here with plain
forward hooks, independent of models/features.py), name errors, torchvision models and every model config."""
import urllib.error
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from models import build_model, feature_spec, model_names

ONE_D = {"mlp", "mlp1d", "cnn1d", "cnn1d_small"}
FLAT = {"mlp", "mlp1d", "lstm"}  # their stages are (B, D) vectors, not maps
TEXT = {"lstm"}  # word ids (B, length) in [0, vocab_size + 2), not float tensors
WIDE_RESNETS = {"wrn_16_1", "wrn_16_2", "wrn_40_1", "wrn_40_2"}  # pre-activation taps: the next BN, not ReLU's input
CONFIG_DIR = Path(__file__).resolve().parent.parent / "cfg" / "model"

# Exact counts at 100 classes. Computed layer by layer from each architecture's description (e.g. resnet8:
# stem 432 + 32, stage blocks 4,672 / 14,528 / 57,728 with 1x1-conv+BN shortcuts, fc 6,500 = 83,892) and
# agreeing with the published two-decimal figures below wherever one exists.
EXACT_PARAMETERS = {
    "resnet8": 83_892, "resnet14": 181_108, "resnet20": 278_324, "resnet32": 472_756, "resnet44": 667_188,
    "resnet56": 861_620, "resnet110": 1_736_564, "resnet8x4": 1_233_540, "resnet32x4": 7_433_860,
    # preresnet20: resnet20 less the stem BN and the shortcut BNs, block BNs on the input width, plus a final BN(64)
    "preresnet20": 278_132,
    "wrn_16_1": 180_916, "wrn_16_2": 703_284, "wrn_40_1": 569_780, "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028, "vgg11": 9_277_284, "vgg13": 9_462_180, "vgg16": 14_774_436, "vgg19": 20_086_692,
    "mobilenetv2": 812_836, "shufflenetv1": 949_258, "shufflenetv2": 1_356_104,
    # mobilenetv1: stem 864 + BN 64; each depthwise-separable block i -> o: 9i + BN 2i + io + BN 2o (13 blocks,
    # 3,206,048 in all); fc 1024 x 100 + 100
    "mobilenetv1": 3_309_476,
    "resnet18_cifar": 11_220_132, "resnet34_cifar": 21_328_292, "resnet50_cifar": 23_705_252,
    "cnn5": 369_124, "lenet": 144_536, "mlp": 103_012, "mlp1d": 24_700, "cnn1d": 44_164, "cnn1d_small": 5_356,
    # lstm at vocab_size 20000: embedding 20002 x 128, two directions of 4 x 100 x (128 + 100) + 800, head 200 -> 100
    "lstm": 2_764_356,
}
# Millions at 100 classes as RepDistiller / mdistiller publish them (CRD paper and mdistiller model tables).
PUBLISHED_MILLIONS = {
    "resnet8": 0.08, "resnet20": 0.28, "resnet32": 0.47, "resnet56": 0.86, "resnet110": 1.74,
    "resnet8x4": 1.23, "resnet32x4": 7.43, "wrn_16_2": 0.70, "wrn_40_1": 0.57, "wrn_40_2": 2.26,
    "vgg8": 3.96, "vgg13": 9.46, "mobilenetv2": 0.81, "shufflenetv1": 0.95, "shufflenetv2": 1.36,
    "resnet50_cifar": 23.71,
}


def input_shape(name):
    return (20,) if name in TEXT else (1, 40) if name in ONE_D else (3, 32, 32)


def example_input(name, batch=2):
    if name in TEXT:  # the registered default vocabulary: 20000 words after <pad> and <unk>
        return torch.randint(2, 20002, (batch, *input_shape(name)))
    return torch.randn(batch, *input_shape(name))


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())


def capture(model, taps, x):
    """One forward with a hook per tap: "name" keeps the submodule's output, "name:input" its first input.
    Each tap must fire exactly once, or a reused module would silently hand back its last call."""
    modules = dict(model.named_modules())
    captured, calls, handles = {}, {}, []

    def keep(tap, tensor):
        captured[tap] = tensor
        calls[tap] = calls.get(tap, 0) + 1

    for tap in dict.fromkeys(taps):
        name, _, where = tap.partition(":")
        assert name in modules, f"tap '{tap}' names no submodule of {type(model).__name__}"
        if where == "input":
            handles.append(modules[name].register_forward_pre_hook(lambda _m, args, tap=tap: keep(tap, args[0])))
        else:
            assert where == "", f"tap '{tap}' has an unknown suffix"
            handles.append(modules[name].register_forward_hook(lambda _m, _a, out, tap=tap: keep(tap, out)))
    try:
        logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {tap: 1 for tap in dict.fromkeys(taps)}, f"taps must fire once per forward: {calls}"
    return logits, captured


def all_taps(spec):
    return [*spec.stages, *spec.preact_stages, spec.embedding]


@pytest.mark.parametrize("name", model_names())
def test_forward_and_feature_taps(name):
    torch.manual_seed(0)
    model = build_model(name, 10, input_shape(name)).eval()
    spec = feature_spec(model)
    assert len(spec.stages) == len(spec.preact_stages) > 0
    classifier_name, _, where = spec.embedding.partition(":")
    assert where == "input" and classifier_name == model.classifier_name
    classifier = model.get_submodule(classifier_name)
    assert isinstance(classifier, nn.Linear) and classifier.out_features == 10

    x = example_input(name)
    with torch.no_grad():
        logits, features = capture(model, all_taps(spec), x)
    assert logits.shape == (2, 10)
    spatial_dims = 0 if name in FLAT else 1 if name in ("cnn1d", "cnn1d_small") else 2
    sizes = []
    for stage, preact in zip(spec.stages, spec.preact_stages):
        assert features[stage].dim() == 2 + spatial_dims and features[stage].shape[0] == 2
        assert features[preact].shape == features[stage].shape
        sizes.append(tuple(features[stage].shape[2:]))
    for shallow, deep in zip(sizes, sizes[1:]):
        assert all(d <= s for s, d in zip(shallow, deep)), f"stages must not grow shallow -> deep: {sizes}"
    embedding = features[spec.embedding]
    assert embedding.shape == (2, classifier.in_features)
    torch.testing.assert_close(classifier(embedding), logits)


@pytest.mark.parametrize("name", model_names())
def test_training_mode_forward(name):
    model = build_model(name, 10, input_shape(name)).train()
    assert model(example_input(name)).shape == (2, 10)


@pytest.mark.parametrize("name", [name for name in model_names() if name not in WIDE_RESNETS])
def test_preactivation_taps_are_what_the_stage_activates(name):
    """Where a stage declares its own pre-activation tap, the stage is exactly ReLU(pre-activation); this also
    catches an in-place ReLU overwriting the tensor a pre-hook captured. (WRNs differ: see below.)"""
    torch.manual_seed(0)
    model = build_model(name, 10, input_shape(name)).eval()
    spec = feature_spec(model)
    pairs = [(stage, preact) for stage, preact in zip(spec.stages, spec.preact_stages) if stage != preact]
    if not pairs:
        pytest.skip(f"{name} declares no separate pre-activation taps")
    with torch.no_grad():
        _, features = capture(model, [tap for pair in pairs for tap in pair], example_input(name))
    for stage, preact in pairs:
        assert features[preact].min() < 0, f"{preact} holds no negative values"
        torch.testing.assert_close(torch.relu(features[preact]), features[stage], rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(WIDE_RESNETS))
def test_wrn_taps_are_repdistiller_s(name):
    """RepDistiller's (and mdistiller's) wrn.py: the stages are the raw conv1 / block1 / block2 / block3 outputs
    (the last one before the final BN + ReLU), and the pre-activation taps are conv1, block2.layer[0].bn1(f1),
    block3.layer[0].bn1(f2) and bn1(f3). Checked against a forward done here module by module."""
    torch.manual_seed(0)
    model = build_model(name, 10).eval()
    for module in model.modules():  # non-trivial statistics, so BN(x) is visibly not x
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    spec = feature_spec(model)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        _, features = capture(model, all_taps(spec), x)
        f0 = model.conv1(x)
        f1 = model.block1(f0)
        f2 = model.block2(f1)
        f3 = model.block3(f2)
        expected_stages = [f0, f1, f2, f3]
        expected_preact = [f0, model.block2[0].bn1(f1), model.block3[0].bn1(f2), model.bn1(f3)]
    for tap, expected in zip(spec.stages, expected_stages):
        torch.testing.assert_close(features[tap], expected, rtol=0, atol=0)
    for tap, expected in zip(spec.preact_stages, expected_preact):
        torch.testing.assert_close(features[tap], expected, rtol=0, atol=0)
    assert features[spec.stages[-1]].min() < 0, "the last stage is the raw block output, not ReLU(BN(.))"
    pooled = torch.relu(expected_preact[-1]).mean(dim=(2, 3))
    torch.testing.assert_close(features[spec.embedding], pooled)  # the embedding still reads relu(bn1(f3))


@pytest.mark.parametrize("name", ["resnet8x4"])
def test_last_stage_preactivation_differs_from_the_stage(name):
    model = build_model(name, 100).eval()
    spec = feature_spec(model)
    assert spec.preact_stages[-1] != spec.stages[-1]
    with torch.no_grad():
        _, features = capture(model, [spec.stages[-1], spec.preact_stages[-1]], torch.randn(2, 3, 32, 32))
    assert features[spec.preact_stages[-1]].min() < 0 <= features[spec.stages[-1]].min()


def test_every_registered_model_has_an_exact_count():
    assert sorted(EXACT_PARAMETERS) == model_names()


@pytest.mark.parametrize("name", model_names())
def test_parameter_counts_are_exact(name):
    assert count_parameters(build_model(name, 100, input_shape(name))) == EXACT_PARAMETERS[name]


def test_mobilenetv1_is_mdistillers_size():
    """mdistiller's ImageNet MobileNet-V1 (models/imagenet/mobilenetv1.py): the same layers give 4,231,976
    parameters at 1000 classes (3,206,976 before the fc, + 1024 x 1000 + 1000), the usual 4.2M of the paper."""
    model = build_model("mobilenetv1", 1000, (3, 224, 224))
    assert count_parameters(model) == 4_231_976
    assert [model.get_submodule(stage)[3].out_channels for stage in model.feature_stages] == [128, 256, 512, 1024]
    with torch.no_grad():
        _, features = capture(model.eval(), model.feature_stages, torch.randn(1, 3, 224, 224))
    assert [tuple(features[stage].shape[2:]) for stage in model.feature_stages] == [(56, 56), (28, 28), (14, 14), (7, 7)]


@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_parameter_counts_match_the_published_figures(name):
    millions = EXACT_PARAMETERS[name] / 1e6
    # Within 1%, or within the published figure's own rounding (+-0.005M) where that is coarser (resnet8).
    assert millions == pytest.approx(PUBLISHED_MILLIONS[name], rel=0.01, abs=0.005)


@pytest.mark.parametrize("name", ["resnet8x4", "resnet32x4", "wrn_40_2", "wrn_16_2"])
def test_anchor_counts_within_one_percent(name):
    assert EXACT_PARAMETERS[name] / 1e6 == pytest.approx(PUBLISHED_MILLIONS[name], rel=0.01)


def test_cnn5_is_the_semiparametric_code_s_cnn5():
    """semiparametric-distillation models/base_cnn.py CNN5 (num_channels 32), counted by hand at 10 classes:
    conv 3->32, 32->64, 64->128 (3x3, with bias), a BatchNorm2d after each, fc1 2048->128, BatchNorm1d(128),
    fc2 128->10: 357,514 parameters (the paper's 0.36M). Its forward, re-done functionally with the model's own
    weights in the released order: conv -> BN -> 2x2 max-pool -> ReLU, three times; fc1 -> BN -> ReLU; fc2."""
    convs = [(3, 32), (32, 64), (64, 128)]
    by_hand = sum(9 * i * o + o + 2 * o for i, o in convs) + (2048 * 128 + 128) + 2 * 128 + (128 * 10 + 10)
    assert by_hand == 357_514
    model = build_model("cnn5", 10).eval()
    assert count_parameters(model) == by_hand
    for module in model.modules():  # non-trivial BatchNorm statistics, so a misplaced BN shows
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    fc1, fc2 = [m for m in model.modules() if isinstance(m, nn.Linear)]
    fcbn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm1d))

    def norm(x, bn):
        return nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)

    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = x
        for conv, bn in zip(convs, norms):
            out = torch.relu(nn.functional.max_pool2d(norm(conv(out), bn), 2))
        expected = fc2(torch.relu(norm(fc1(out.view(-1, 4 * 4 * 128)), fcbn)))
        torch.testing.assert_close(model(x), expected)


def test_cifar_resnet_shortcut_a_is_the_semiparametric_code_s():
    """semiparametric-distillation models/resnet_cifar.py option A: no shortcut parameters, so resnet20 at 10
    classes has 269,722 (stem 432 + 32; stage 1: 3 x (2 x 2,304 + 2 x 32); stage 2: 4,608 + 9,216 + 128, then
    2 x (2 x 9,216 + 128); stage 3: 18,432 + 36,864 + 256, then 2 x (2 x 36,864 + 256); fc 650); the shortcut
    subsamples by 2 and zero-pads planes // 4 channels on each side."""
    by_hand = (432 + 32) + 3 * (2 * 2_304 + 64) + (4_608 + 9_216 + 128) + 2 * (2 * 9_216 + 128) \
        + (18_432 + 36_864 + 256) + 2 * (2 * 36_864 + 256) + 650
    assert by_hand == 269_722
    model = build_model("resnet20", 10, shortcut="A")
    assert count_parameters(model) == by_hand
    assert count_parameters(build_model("resnet20", 10)) == by_hand + (512 + 64) + (2_048 + 128)  # option B
    shortcut = model.layer2[0].downsample
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(0))
    expected = torch.zeros(2, 32, 4, 4)
    expected[:, 8:24] = x[:, :, 0::2, 0::2]
    torch.testing.assert_close(shortcut(x), expected, rtol=0, atol=0)
    with torch.no_grad():
        assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="shortcut must be 'A' .* or 'B'"):
        build_model("resnet20", 10, shortcut="C")


def test_shortcut_at_its_default_keeps_existing_run_hashes():
    from hydra import compose, initialize_config_dir

    from runs.folders import config_digest

    def digest(*overrides):
        with initialize_config_dir(config_dir=str(CONFIG_DIR.parent), version_base="1.3"):
            return config_digest(compose("distill", ["student=resnet8", "teacher/model=resnet20", *overrides]))

    before = digest("~student.shortcut", "~teacher.model.shortcut")  # configs from before the option
    assert digest() == before
    assert digest("student.shortcut=A") != before != digest("teacher.model.shortcut=A")


def test_build_model_marks_name_and_classes():
    model = build_model("resnet8", 7)
    assert model.model_name == "resnet8" and model.num_classes == 7


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown model 'resnet9'; valid: .*torchvision\.<name>") as error:
        build_model("resnet9", 10)
    assert all(name in str(error.value) for name in model_names())


@pytest.mark.parametrize("num_classes", [0, -3])
def test_num_classes_must_be_positive(num_classes):
    with pytest.raises(ValueError, match="num_classes"):
        build_model("resnet8", num_classes)


@pytest.mark.parametrize("name, shape", [("lenet", (1, 28, 28)), ("mlp", (1, 28, 28)), ("mlp", (3, 32, 32)),
                                         ("cnn5", (1, 32, 32))])
def test_small_models_take_other_input_shapes(name, shape):
    model = build_model(name, 5, shape).eval()
    with torch.no_grad():
        logits, _ = capture(model, all_taps(feature_spec(model)), torch.randn(2, *shape))
    assert logits.shape == (2, 5)


def test_vgg_pools_once_more_on_64_pixel_inputs():
    model = build_model("vgg8", 10).eval()
    with torch.no_grad():
        _, small = capture(model, ["block4"], torch.randn(2, 3, 32, 32))
        _, large = capture(model, ["block4"], torch.randn(2, 3, 64, 64))
    assert small["block4"].shape[-1] == 4 and large["block4"].shape[-1] == 4


def test_torchvision_resnet_by_name():
    model = build_model("torchvision.resnet18", 10, (3, 32, 32)).eval()
    spec = feature_spec(model)
    assert spec.stages == ("layer1", "layer2", "layer3", "layer4") and spec.embedding == "fc:input"
    with torch.no_grad():
        logits, features = capture(model, all_taps(spec), torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10) and features["fc:input"].shape == (2, 512)
    torch.testing.assert_close(model.fc(features["fc:input"]), logits)
    assert [features[stage].shape[1] for stage in spec.stages] == [64, 128, 256, 512]


def test_torchvision_other_family_declares_only_the_embedding():
    model = build_model("torchvision.mobilenet_v3_small", 10, (3, 32, 32)).eval()
    spec = feature_spec(model)
    assert spec.stages == () and spec.preact_stages == ()
    with torch.no_grad():
        logits, features = capture(model, [spec.embedding], torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(model.get_submodule(spec.embedding.partition(":")[0])(features[spec.embedding]), logits)


def test_torchvision_bad_names_and_shapes():
    with pytest.raises(ValueError, match="unknown torchvision model 'not_a_net'"):
        build_model("torchvision.not_a_net", 10)
    with pytest.raises(ValueError, match="no weights 'IMAGENET9K'; valid: .*DEFAULT"):
        build_model("torchvision.resnet18", 10, weights="IMAGENET9K")
    with pytest.raises(ValueError, match="RGB"):
        build_model("torchvision.resnet18", 10, (1, 28, 28))


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """An empty torch hub cache, and downloads that fail as they do offline."""
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path


def test_torchvision_weights_offline_name_the_file_and_where_to_put_it(hub_dir):
    import torchvision

    file_name = Path(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url).name
    with pytest.raises(RuntimeError, match="could not load torchvision weights") as error:
        build_model("torchvision.resnet18", 10, weights="DEFAULT")
    assert str(hub_dir / "checkpoints" / file_name) in str(error.value)


def test_torchvision_weights_from_the_cache_get_a_new_head(hub_dir):
    import torchvision

    pretrained = torchvision.models.resnet18()
    cached = hub_dir / "checkpoints" / Path(torchvision.models.ResNet18_Weights.DEFAULT.url).name
    cached.parent.mkdir()
    torch.save(pretrained.state_dict(), cached)  # where the offline error tells the user to put it

    model = build_model("torchvision.resnet18", 10, weights="IMAGENET1K_V1")
    torch.testing.assert_close(model.conv1.weight, pretrained.conv1.weight)
    assert (model.fc.in_features, model.fc.out_features) == (512, 10)
    same_head = build_model("torchvision.resnet18", 1000, weights="ResNet18_Weights.DEFAULT")
    torch.testing.assert_close(same_head.fc.weight, pretrained.fc.weight)


# Configs of models from other libraries, built by name rather than registered: torchvision's, and the optional
# timm and Hugging Face ones (tests/test_external_models.py builds those from small configs).
EXTERNAL_MODEL_CONFIGS = ("torchvision", "timm", "hf")
OPTIONAL_PACKAGE = {"timm": "timm", "hf": "transformers"}


def test_every_registered_model_has_a_config():
    assert {path.stem for path in CONFIG_DIR.glob("*.yaml")} == {*model_names(), *EXTERNAL_MODEL_CONFIGS}


@pytest.mark.parametrize("path", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_model_config_instantiates(path):
    assert path.read_text().startswith("# "), "each model config opens with a one-line description"
    if path.stem in OPTIONAL_PACKAGE:
        pytest.importorskip(OPTIONAL_PACKAGE[path.stem])
    if path.stem == "hf":
        pytest.skip("model=hf needs model.source (a hub id or folder): tests/test_external_models.py")
    shape = list(input_shape(path.stem)) if path.stem in TEXT | ONE_D else [3, 32, 32]
    data = {"num_classes": 10, "input_shape": shape, **({"vocab_size": 20000} if path.stem in TEXT else {})}
    cfg = OmegaConf.create({"data": data, "model": OmegaConf.load(path)})
    model = instantiate(cfg.model)
    assert model.num_classes == 10 and model.model_name == cfg.model.name
    x = example_input(path.stem) if path.stem in TEXT else torch.randn(2, *shape)
    assert model(x).shape == (2, 10)
