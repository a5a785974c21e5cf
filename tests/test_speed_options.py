"""Speed settings keep the arithmetic: compile=... compiles student and teacher in place (checkpoint keys
unchanged), channels_last runs conv nets in NHWC, and under bf16-mixed the distillation terms run in fp32."""
import torch

from losses import DistillationObjective
from runs.training import run_distill
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
