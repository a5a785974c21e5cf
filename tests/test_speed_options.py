"""Speed settings keep the arithmetic: compile=... compiles student and teacher in place (checkpoint keys
unchanged; compile=graphs, CUDA only, says so and runs uncompiled elsewhere), channels_last runs conv nets in
NHWC, under bf16-mixed the distillation terms run in fp32, and optimizers are fused where torch can."""
from functools import partial

import torch

from losses import DistillationObjective
from runs.training import compile_setting, run_distill
from tasks.classification import fused_where_possible
from tests.fake_cifar import fake_cifar100  # noqa: F401 - fixture
from tests.helpers import compose_config

FEW = ["data=cifar100", "data.val_size=0", "data.batch_size=4", "data.num_workers=0", "data.train_subset=8",
       "data.test_subset=4", "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
       "~logger", "~experiment", "student=resnet8", "teacher/model=resnet8", "teacher.recipe.trainer.max_epochs=1"]


def test_compiled_channels_last_run_keeps_checkpoint_keys(fake_cifar100, tmp_path):
    cfg = compose_config("distill", [*FEW, f"paths.data_dir={fake_cifar100}", f"paths.output_dir={tmp_path}",
                                     "compile=eager", "channels_last=true", "kd=fitnet"])
    record = run_distill(cfg, quiet=True)
    keys = torch.load(record["checkpoints"]["last"], map_location="cpu", weights_only=False)["state_dict"]
    assert keys and not any("_orig_mod" in key for key in keys)
    assert any(key.startswith("model.") for key in keys) and not any(key.startswith("teacher") for key in keys)


def test_terms_compute_in_fp32_under_bf16_mixed(fake_cifar100, tmp_path, monkeypatch):
    seen = []
    original = DistillationObjective.forward

    def watching(self, batch, weights=None):
        total, values = original(self, batch, weights)
        seen.append((torch.is_autocast_enabled("cpu"), batch.student_logits.dtype, total.dtype))
        return total, values
    monkeypatch.setattr(DistillationObjective, "forward", watching)
    cfg = compose_config("distill", [*FEW, f"paths.data_dir={fake_cifar100}", f"paths.output_dir={tmp_path}",
                                     "trainer.precision=bf16-mixed", "kd=kd"])
    run_distill(cfg, quiet=True)
    assert seen and all(not autocast for autocast, _, _ in seen)
    assert all(logits == torch.bfloat16 for _, logits, _ in seen)  # the models did run in bf16
    assert all(total == torch.float32 for _, _, total in seen)


def test_cuda_graphs_fall_back_to_uncompiled_models_on_the_cpu_with_one_line(caplog):
    cfg = compose_config("distill", [*FEW, "compile=graphs"])
    with caplog.at_level("WARNING", logger="runs.training"):
        assert compile_setting(cfg) is False
    assert [r.getMessage() for r in caplog.records] == [
        "compile=graphs replays CUDA graphs, which need a CUDA device; on this machine the models run uncompiled"]
    assert compile_setting(compose_config("distill", [*FEW, "compile=eager"])) == "eager"


def test_fused_optimizer_where_torch_has_the_kernel_unless_the_config_says(monkeypatch):
    parameters = [torch.nn.Parameter(torch.randn(3))]
    assert fused_where_possible(partial(torch.optim.SGD, lr=0.1), parameters).defaults["fused"] is True  # CPU too
    assert not fused_where_possible(partial(torch.optim.SGD, lr=0.1, fused=False), parameters).defaults["fused"]
    assert not fused_where_possible(partial(torch.optim.SGD, lr=0.1, foreach=True), parameters).defaults["fused"]
    assert isinstance(fused_where_possible(lambda p: torch.optim.SGD(p, lr=0.1), parameters), torch.optim.SGD)
