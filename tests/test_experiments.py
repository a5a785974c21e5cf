"""Every named experiment in cfg/experiment/ composes and runs one step on CPU (fake data where needed)."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tasks.runs import run_distill, run_train
from tests.fake_cifar import skip_cifar_md5, write_fake_cifar  # noqa: F401 - fixture
from tests.helpers import CFG_DIR, compose_config

EXPERIMENT_DIR = Path(CFG_DIR) / "experiment"
EXPERIMENTS = sorted(str(p.relative_to(EXPERIMENT_DIR).with_suffix("")) for p in EXPERIMENT_DIR.rglob("*.yaml"))
ONE_STEP = ["trainer.max_epochs=1", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false",
            "data.batch_size=8", "data.num_workers=0"]


def entry_point(name: str) -> str:
    """Experiments are for distill_train.py unless the file says `task: train`."""
    return "train" if OmegaConf.load(EXPERIMENT_DIR / f"{name}.yaml").get("task") == "train" else "distill"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_runs_one_step(name, tmp_path, data_dir, skip_cifar_md5):
    config_name = entry_point(name)
    cfg = compose_config(config_name, [f"experiment={name}"])
    overrides = [f"experiment={name}", f"paths.output_dir={tmp_path / 'outputs'}", *ONE_STEP]
    if cfg.data.name.startswith("cifar"):
        write_fake_cifar(tmp_path / "data", cfg.data.name, n_train=16, n_test=8)
        overrides += [f"paths.data_dir={tmp_path / 'data'}", "data.val_size=0"]
    else:
        overrides += [f"paths.data_dir={data_dir}"]
    if config_name == "distill":
        overrides.append("teacher.recipe.trainer.max_epochs=null")  # the teacher trains for the same one step
    run = run_train if config_name == "train" else run_distill
    record = run(compose_config(config_name, overrides), quiet=True)
    assert Path(record["run_dir"], "record.json").is_file()
    assert 0.0 <= record["last"]["test/top1"] <= 1.0
