"""`python distill_train.py kd=NAME` after the quickstart: every method in cfg/kd/ composes on the quickstart's
pair and recipe (cnn1d -> mlp1d on mnist1d) and either takes a training step or stops at setup with its one-line
reason (REFUSED; the README counts both). One step outside the Lightning loop, from one shared tiny teacher:
the full run is what tests/test_readme_commands.py runs for kd=dkd."""
from __future__ import annotations

from pathlib import Path

import pytest

from errors import UserError
from runs.training import derived_train_config, run_train
from tests.helpers import CFG_DIR, compose_config
from tests.test_experiments import one_training_step

METHODS = sorted(p.stem for p in (Path(CFG_DIR) / "kd").glob("*.yaml"))
# Methods the 1-D pair cannot serve (an MLP student: two flat stages, no positions, no pre-activations; 1-D
# inputs), with the reason each gives.
REFUSED = {"ab": "AB connects 1-d or 2-d feature maps of the same kind",
           "at": "AT compares feature maps over positions",
           "deit_hard": "needs a model with a distillation token",
           "deit_soft": "needs a model with a distillation token",
           "fitnet": "feature tap 'stage:2' does not exist on mlp1d",
           "dist_plus": "DIST\\+ compares the student's and the teacher's 'stage:-1' maps position by position",
           "fsp": "FSP needs equal student and teacher channel counts",
           "ft": "FT's paraphraser and translator are 2-d convolutions",
           "ickd": "ICKD connects 1-d or 2-d feature maps of the same kind",
           "kdsvd": "KD-SVD relates consecutive stages",
           "l2_embedding": "compares the student's and the teacher's 'embedding' directly",
           "mlkd": "reads a strong augmented view of each training example, which data=mnist1d does not make",
           "mlkd_ls": "reads a strong augmented view of each training example, which data=mnist1d does not make",
           "nst": "NST compares feature maps over positions",
           "ofd": "OFD connects 1-d or 2-d feature maps of the same kind",
           "pad_l2_embedding": "compares the student's and the teacher's 'embedding' directly",
           "reviewkd": "ReviewKD fuses 1-d or 2-d feature maps",
           "sskd": "SSKD rotates its inputs by 90 degrees",
           "vid": "VID regresses feature maps"}
SMALL = ["data.train_subset=32", "data.val_size=16", "data.test_subset=16", "data.batch_size=16",
         "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger"]


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory, data_dir) -> str:
    """The quickstart's teacher (cnn1d), trained for one epoch on the small data."""
    outputs = tmp_path_factory.mktemp("quickstart_methods")
    cfg = compose_config("distill", [*SMALL, f"paths.data_dir={data_dir}", f"paths.output_dir={outputs}"])
    return run_train(derived_train_config(cfg, cfg.teacher.model), quiet=True)["checkpoints"]["last"]


def test_the_readme_counts_the_methods_that_run_on_the_quickstart_pair():
    readme = " ".join((Path(CFG_DIR).parent / "README.md").read_text().split())
    assert f"{len(METHODS) - len(REFUSED)} of the {len(METHODS)} methods in `cfg/kd/` run on this pair" in readme
    assert ", ".join(f"`{name}`" for name in sorted(REFUSED)) in readme


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_or_refuses_on_the_quickstart_pair(method, teacher_checkpoint, data_dir, tmp_path):
    cfg = compose_config("distill", [f"kd={method}", *SMALL, f"teacher.checkpoint={teacher_checkpoint}",
                                     f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}"])
    assert (cfg.data.name, cfg.teacher.model.name, cfg.student.name, cfg.kd.name) == ("mnist1d", "cnn1d", "mlp1d", method)
    if method in REFUSED:
        with pytest.raises(UserError, match=REFUSED[method]):
            one_training_step(cfg)
    else:
        one_training_step(cfg)
