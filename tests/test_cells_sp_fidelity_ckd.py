"""The semiparametric, fidelity and comparative-KD cells hold what their anchors ran (composed as a run sees them):
the semiparametric cross-fit recipe, alpha and teacher shortcut and its published values, gnosis's one-teacher and
ensemble cells and its synthetic cell, CKD's grid, schedule, tuples and arms."""
from __future__ import annotations

import statistics

import pytest

from scripts.experiments import ckd, names, semiparametric
from tests.helpers import compose_config


def cell(name: str, entry: str = "distill"):
    return compose_config(entry, [f"experiment={name}"])


@pytest.mark.parametrize("name, batch, lr", [("kd_resnet20_cnn5", 512, 0.4), ("crossfit_kd_resnet20_cnn5", 128, 0.1),
                                             ("enhanced_kd_resnet20_cnn5", 128, 0.1)])
def test_semiparametric_recipes(name, batch, lr):
    """scripts/distill_cnn5.sh: KD lines pass batch 512 / lr 0.4; the cross-fit lines pass none, so cfg/distill.yaml's
    128 and cfg/optimizer/sgd.yaml's 0.1 hold. Teachers: option-A shortcuts. fp32."""
    cfg = cell(f"semiparametric/{name}", "distill")
    assert (cfg.data.batch_size, cfg.optimizer.lr) == (batch, lr)
    assert cfg.teacher.model.shortcut == "A" and cfg.trainer.precision == "32-true"
    assert cfg.published.source == "microsoft/semiparametric-distillation cifar_plot.py"


def test_enhanced_kd_alpha_and_the_ablation():
    """alpha 1e-2 everywhere but in the ablation's other cells; each ablation cell's published value is the mean of
    cifar_plot.py's three runs at its alpha, and alpha 1e-2's mean is the published depth-20 enhanced KD."""
    enhanced = cell("semiparametric/enhanced_kd_resnet32_cnn5")
    assert (enhanced.kd.terms.ce.weight, enhanced.kd.terms.kd_mse_gamma.weight) == (0.99, 0.01)
    assert (enhanced.published.value, enhanced.published.teacher) == (83.98, 86.35)  # cross-fit teacher
    ablation = sorted(n for n in names("semiparametric") if "_alpha" in n)
    assert len(ablation) == len(semiparametric.SP_ALPHAS) - 1
    runs = list(zip(*semiparametric.SP_ALPHA_RUNS))
    assert round(100 * statistics.fmean(runs[semiparametric.SP_ALPHAS.index(1e-2)]), 2) == 84.61
    smallest = cell("semiparametric/enhanced_kd_alpha1e-5_resnet20_cnn5")
    assert smallest.kd.terms.kd_mse_gamma.weight == 1e-5
    assert smallest.published.value == round(100 * statistics.fmean(runs[0]), 2) == 83.33


def test_crossfit_teacher_cell_trains_one_fold_teacher():
    cfg = cell("semiparametric/crossfit_teacher_resnet20", "train")
    assert cfg.task == "train" and (cfg.data.crossfit.folds, cfg.data.crossfit.fold) == (5, 0)
    assert cfg.model.shortcut == "A" and (cfg.data.batch_size, cfg.optimizer.lr) == (128, 0.1)
    assert (cfg.published.value, cfg.published.std) == (85.8, 0.4)


@pytest.mark.parametrize("name, kind, size", [("kd_preresnet20_preresnet20", "single", None),
                                              ("kd_ens3_preresnet20_preresnet20", "ensemble", 3),
                                              ("kd_lstm_lstm_imdb", "single", None)])
def test_fidelity_teachers(name, kind, size):
    """gnosis: the README's distill commands keep teacher.num_components 1 (trial i gets teacher i); the paper's
    ensembles use 3 members shared by every trial."""
    cfg = cell(f"fidelity/{name}")
    assert cfg.teacher.kind == kind and cfg.teacher.get("size") == size
    assert cfg.teacher.recipe.seed == (0 if kind == "ensemble" else None)


def test_fidelity_synthetic_cell():
    cfg = cell("fidelity/kd_synthetic_preresnet20_preresnet20")
    assert (cfg.augment.name, cfg.augment.ratio, cfg.augment.temperature) == ("synthetic", 0.2, 1.0)
    assert (cfg.kd.terms.kd.temperature, cfg.kd.terms.kd.generated_temperature) == (4.0, 1.0)


def test_ckd_grid():
    """Every sweep student, subset size and arm once; 80% of the subset is the budget, 20% validates."""
    cells = names("ckd")
    assert len(cells) == len(ckd.ARMS) * len(ckd.CKD_STUDENTS) * len(ckd.CKD_SUBSETS) == 168
    assert not [n for n in cells if n.startswith("ckd/kd_")]  # no sweep runs plain KD
    cfg = cell("ckd/dist_wrn_16_2_budget2800")
    assert (cfg.teacher.budget, cfg.data.val_size, cfg.teacher.model.name) == (2800, 700, "wrn_40_2")


@pytest.mark.parametrize("name, check", [
    ("ckd_pn3_vgg8_budget2000", lambda c: (c.kd.terms.ckd.pairs, c.kd.terms.ckd.pos_and_neg, c.kd.terms.ce.weight)
     == ("pool", 3, 0.0)),
    ("rkd_resnet32_budget4800", lambda c: (c.kd.terms.rkd.student_tap, c.kd.terms.rkd.per_class, c.kd.terms.kd.weight)
     == ("logits", 5, 1.0)),
    ("mixup_resnet32_budget1600", lambda c: (c.augment.name, c.augment.teacher_mix, c.kd.terms.teacher_ce.temperature)
     == ("mixup_interpolated", "probabilities", 1.0) and "kd" not in c.kd.terms),
    ("mixup3_vgg8_budget1600", lambda c: c.augment.name == "mixup3_interpolated"),
])
def test_ckd_arms(name, check):
    cfg = cell(f"ckd/{name}")
    assert check(cfg)
    assert cfg.callbacks.plateau_restart.max_decays == ckd.LR_DECAY_TIMES - 1 == 2
    assert cfg.teacher.kind == "cached" and cfg.teacher.student_views == "fresh"
    assert cfg.trainer.precision == "32-true"


def test_ckd_crd_cells_read_logits_from_the_cached_teacher():
    cfg = cell("ckd/crd_resnet32_budget1600")
    assert (cfg.kd.terms.crd.student_tap, cfg.kd.terms.crd.teacher_tap) == ("logits", "logits")
    assert cfg.teacher.kind == "cached" and cfg.kd.terms.crd.weight == 0.8 and cfg.kd.terms.kd.weight == 1.0