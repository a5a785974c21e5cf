"""`python distill_train.py kd=NAME` after the quickstart, and `python distill_train.py data=digits kd=NAME`: every
method of cfg/kd/ takes a training step on the digits image pair (resnet32 -> resnet8), and on the quickstart's pair
(cnn1d -> mlp1d on mnist1d) either takes one or stops before any training with its reason and the digits command.
Which methods refuse the quickstart's pair is not listed here: the terms' own checks of what they need decide it
(runs/model_fit.py, method_misfit); a method that reads logits only must run there. One step outside the Lightning
loop, from one shared briefly trained teacher per pair: full runs are in tests/test_readme_commands.py."""
from __future__ import annotations

import pytest

from errors import UserError
from runs.training import derived_train_config, run_train
from tests.helpers import METHODS, compose_config, needs_another_model_kind, reads_features, reads_views
from tests.test_experiments import one_training_step

SMALL = ["data.train_subset=32", "data.val_size=16", "data.test_subset=16", "data.batch_size=16",
         "trainer.max_epochs=1", "trainer.accelerator=cpu", "trainer.enable_progress_bar=false", "~logger"]
PAIRS = {"mnist1d": ("cnn1d", "mlp1d"), "digits": ("resnet32", "resnet8")}


@pytest.fixture(scope="module")
def teacher_checkpoints(tmp_path_factory, data_dir) -> dict[str, str]:
    """Each pair's default teacher, trained for one epoch on the small data."""
    outputs = tmp_path_factory.mktemp("quickstart_methods")
    checkpoints = {}
    for data in PAIRS:
        cfg = compose_config("distill", [f"data={data}", *SMALL, f"paths.data_dir={data_dir}",
                                         f"paths.output_dir={outputs}"])
        checkpoints[data] = run_train(derived_train_config(cfg, cfg.teacher.model), quiet=True)["checkpoints"]["last"]
    return checkpoints


def method_config(method: str, data: str, teacher: str, data_dir, output_dir):
    cfg = compose_config("distill", [f"data={data}", f"kd={method}", *SMALL, f"teacher.checkpoint={teacher}",
                                     f"paths.data_dir={data_dir}", f"paths.output_dir={output_dir}"])
    assert (cfg.data.name, cfg.teacher.model.name, cfg.student.name, cfg.kd.name) == (data, *PAIRS[data], method)
    return cfg


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_the_digits_pair(method, teacher_checkpoints, data_dir, tmp_path):
    cfg = method_config(method, "digits", teacher_checkpoints["digits"], data_dir, tmp_path)
    if not needs_another_model_kind(method):
        one_training_step(cfg)
        return
    # a tap no CNN declares (DeiT's distillation token): refused before any training, in one line
    with pytest.raises(UserError, match=rf"^kd={method} cannot run on resnet32 -> resnet8 \(digits\): "):
        one_training_step(cfg)


@pytest.mark.parametrize("method", METHODS)
def test_method_runs_or_refuses_before_training_on_the_quickstart_pair(method, teacher_checkpoints, data_dir,
                                                                       tmp_path):
    cfg = method_config(method, "mnist1d", teacher_checkpoints["mnist1d"], data_dir, tmp_path)
    try:
        one_training_step(cfg)
    except UserError as error:
        message = str(error)
        assert "\n" not in message and not (tmp_path / "distill").exists() and not (tmp_path / "train").exists()
        if reads_views(method):  # the data makes no strong view: the line names the data that do, digits among them
            assert "reads a strong augmented view" in message and "data=digits" in message
            return
        assert reads_features(method), f"kd={method} reads logits only, yet the quickstart's pair refuses it: {message}"
        assert message.startswith(f"kd={method} cannot run on cnn1d -> mlp1d (mnist1d): ")
        assert "; use" not in message  # no advice about the term's options, which cannot help this pair
        if not needs_another_model_kind(method):
            assert message.endswith(f"Every method runs on the digits image pair: python distill_train.py "
                                    f"data=digits kd={method}")


def test_a_refusal_comes_before_the_teacher_is_trained(data_dir, tmp_path):
    cfg = compose_config("distill", ["kd=fitnet", *SMALL, f"paths.data_dir={data_dir}", f"paths.output_dir={tmp_path}"])
    from runs.training import run_distill
    with pytest.raises(UserError, match=r"kd=fitnet cannot run on cnn1d -> mlp1d \(mnist1d\): feature tap 'stage:2'"):
        run_distill(cfg, quiet=True)
    assert not (tmp_path / "train").exists()
