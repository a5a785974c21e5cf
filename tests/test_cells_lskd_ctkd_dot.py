"""The logit-standardization, CTKD and DOT cells hold what their anchors ran (composed as a run sees them): one cell
per published number; each LS cell's base temperature, weight and DKD beta as its published run's log names them;
CTKD's curriculum and temperature range; DOT's delta and task terms; the objective and optimizer build."""
from __future__ import annotations

import pytest
import torch

from runs.configs import build_objective, instantiate
from scripts.experiments import ctkd, lskd, mdistiller, names
from tasks.dot import DistillationOrientedTrainer
from tests.helpers import compose_config


def cell(name: str):
    return compose_config("distill", [f"experiment={name}"])


def test_one_cell_per_published_number():
    assert len(names("lskd")) == sum(len(values) for values in lskd.LS_RESULTS.values()) == 6 * 14
    assert all(len(values) == len(lskd.LS_PAIRS) for values in lskd.LS_RESULTS.values())
    assert len(names("ctkd")) == len(ctkd.CTKD_CIFAR) + 1
    assert sum(n.startswith("mdistiller/kd_dot_") for n in names("mdistiller")) == \
        len(mdistiller.MD_DOT_CIFAR) + len(mdistiller.MD_DOT_IMAGENET)


@pytest.mark.parametrize("name, temperature, weight", [("kd_ls_resnet32x4_resnet8x4", 2.0, 9.0),
                                                      ("kd_ls_vgg13_vgg8", 3.0, 9.0),
                                                      ("kd_ls_resnet110_resnet20", 4.0, 12.0),
                                                      ("kd_ls_resnet50_cifar_mobilenetv2", 3.0, 1.0)])
def test_kd_ls_cells_take_their_logs_settings(name, temperature, weight):
    cfg = cell(f"lskd/{name}")
    kd = cfg.kd.terms.kd
    assert (kd.temperature, kd.weight, kd.standardize, cfg.kd.terms.ce.weight) == (temperature, weight, True, 0.1)
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.published.epoch) == (240, 64, "best")
    assert cfg.optimizer.lr == (0.01 if "mobilenetv2" in name else 0.05)


@pytest.mark.parametrize("name, temperature, weight, beta", [("dkd_ls_resnet32x4_resnet8x4", 2.0, 9.0, 8.0),
                                                            ("dkd_ls_resnet56_resnet20", 3.0, 18.0, 2.0),
                                                            ("dkd_ls_resnet32x4_wrn_40_2", 2.0, 9.0, 8.0)])
def test_dkd_ls_cells_scale_alpha_and_beta_by_the_weight(name, temperature, weight, beta):
    dkd = cell(f"lskd/{name}").kd.terms.dkd
    assert (dkd.weight, dkd.weight_tckd, dkd.weight_nckd, dkd.temperature, dkd.standardize) == \
        (weight, 1.0, beta, temperature, True)


def test_rows_without_ls_run_their_methods_plain():
    kd, dkd, ctkd_plain = (build_objective(cell(f"lskd/{row}_vgg13_vgg8")).terms for row in ("kd", "dkd", "ctkd"))
    assert (kd["kd"].temperature, kd["kd"].weight, kd["kd"].standardize, kd["ce"].weight) == (4.0, 0.9, False, 0.1)
    assert (dkd["dkd"].weight_nckd, dkd["dkd"].standardize) == (6.0, False)  # mdistiller's vgg13_vgg8.yaml
    assert not ctkd_plain["kd"].standardize and cell("lskd/ctkd_vgg13_vgg8").kd.name == "ctkd"
    assert cell("lskd/dkd_resnet32x4_wrn_16_2").kd.terms.dkd.weight_nckd == 8.0  # no mdistiller config: the default


def test_ctkd_cells_run_the_anchors_curriculum():
    cifar, ls, imagenet = cell("ctkd/ctkd_resnet56_resnet20"), cell("lskd/ctkd_ls_resnet56_resnet20"), \
        cell("ctkd/ctkd_resnet34_resnet18")
    for cfg, weight, epochs in ((cifar, 0.9, 10), (ls, 9.0, 10), (imagenet, 1.0, 5)):
        term = build_objective(cfg).terms["kd"]
        assert (term.weight, term.lambda_epochs, term.temperature_start, term.temperature_range) == (weight, epochs, 1, 20)
        assert (term.lambda_max, term.lambda_min, term.module_kind) == (0.0, -1.0, "global")
    assert build_objective(ls).terms["kd"].standardize and not build_objective(cifar).terms["kd"].standardize
    assert (imagenet.trainer.devices, imagenet.data.batch_size, imagenet.trainer.max_epochs) == (8, 32, 120)
    assert cifar.published.value == 71.19 and imagenet.published.value == 71.32


@pytest.mark.parametrize("name, lr, delta", [("kd_dot_resnet32x4_resnet8x4", 0.05, 0.075),
                                             ("kd_dot_resnet32x4_shufflenetv2", 0.01, 0.075),
                                             ("kd_dot_resnet34_resnet18", 0.2, 0.09)])
def test_dot_cells_build_the_distillation_oriented_trainer(name, lr, delta):
    cfg = cell(f"mdistiller/{name}")
    optimizer = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, DistillationOrientedTrainer) and optimizer.task_terms == ("ce",)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["delta"]) == (lr, 0.9, delta)
    assert cfg.kd.name == "kd_dot" and cfg.published.epoch == "best"
