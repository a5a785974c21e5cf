"""Logit standardization (Sun et al., CVPR 2024) as the `standardize` option of the KD and DKD terms, against
hand computations (plain loops: the row's mean, its unbiased standard deviation, the anchor's 1e-7), and the
limiting case the plain terms do not have: invariance to a per-row shift and positive scale of either side."""
import math

import pytest
import torch

from losses import DistillBatch, KDTerm
from losses.dkd import DKDTerm
from tests.test_logit_losses import kl, make_batch, rows, softmax


def z_score(row):
    """sunshangquan/logit-standardization-KD mdistiller/distillers/KD.py `normalize`, by hand."""
    mean = sum(row) / len(row)
    std = math.sqrt(sum((a - mean) ** 2 for a in row) / (len(row) - 1))
    return [(a - mean) / (1e-7 + std) for a in row]


@pytest.mark.parametrize("temperature", [2.0, 3.0])
def test_standardized_kd_equals_a_hand_computation(temperature):
    batch = make_batch(batch_size=5, num_classes=6, seed=11, scale=3.0)
    total = 0.0
    for z, v, _ in rows(batch):
        total += kl(softmax(z_score(v), temperature), softmax(z_score(z), temperature))
    expected = temperature ** 2 * total / len(batch.targets)
    term = KDTerm(temperature=temperature, standardize=True)
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)
    term(batch).backward()
    assert batch.student_logits.grad.abs().sum() > 0


def test_standardized_dkd_equals_a_hand_computation():
    temperature, alpha, beta = 2.0, 9.0, 18.0
    batch = make_batch(batch_size=5, num_classes=6, seed=12, scale=3.0)
    batch.epoch = 30  # past the warm-up
    total = 0.0
    for z, v, y in rows(batch):
        z, v, target = z_score(z), z_score(v), y.index(1.0)
        ps, pt = softmax(z, temperature), softmax(v, temperature)
        others = [k for k in range(len(z)) if k != target]
        total += alpha * kl([pt[target], 1 - pt[target]], [ps[target], 1 - ps[target]])
        total += beta * kl(softmax([v[k] for k in others], temperature), softmax([z[k] for k in others], temperature))
    expected = temperature ** 2 * total / len(batch.targets)
    term = DKDTerm(weight_tckd=alpha, weight_nckd=beta, temperature=temperature, standardize=True)
    assert term(batch).item() == pytest.approx(expected, rel=1e-4)


def moved(batch: DistillBatch, side: str, seed: int) -> DistillBatch:
    """The batch with one side's logits shifted and scaled per row by random amounts (scale > 0)."""
    generator = torch.Generator().manual_seed(seed)
    rows_ = len(batch.targets)
    shift = 10 * torch.randn(rows_, 1, generator=generator)
    scale = torch.empty(rows_, 1).uniform_(0.2, 5.0, generator=generator)
    student, teacher = batch.student_logits.detach(), batch.teacher_logits
    if side == "student":
        student = student * scale + shift
    else:
        teacher = teacher * scale + shift
    return DistillBatch(inputs=batch.inputs, targets=batch.targets, indices=batch.indices, student_logits=student,
                        teacher_logits=teacher, epoch=batch.epoch)


@pytest.mark.parametrize("side", ["student", "teacher"])
@pytest.mark.parametrize("make_term", [lambda s: KDTerm(temperature=2.0, standardize=s),
                                       lambda s: DKDTerm(temperature=2.0, warmup_epochs=0, standardize=s)],
                         ids=["kd", "dkd"])
def test_standardized_loss_ignores_each_rows_shift_and_scale(side, make_term):
    batch = make_batch(batch_size=6, num_classes=5, seed=13)
    standardized, plain = make_term(True), make_term(False)
    before, after = standardized(batch).item(), standardized(moved(batch, side, seed=3)).item()
    assert after == pytest.approx(before, rel=1e-5, abs=1e-6)
    # the limiting case is the option's own: the plain term moves with the scale
    assert plain(moved(batch, side, seed=3)).item() != pytest.approx(plain(batch).item(), rel=1e-2)


def test_standardize_is_off_by_default_and_named_in_the_config():
    batch = make_batch(seed=14)
    assert KDTerm().standardize is False and DKDTerm().standardize is False
    assert KDTerm(standardize=False)(batch).item() == pytest.approx(KDTerm()(batch).item())
    assert "standardize=True" in repr(KDTerm(standardize=True))
