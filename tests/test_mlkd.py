"""MLKD's terms (losses/mlkd.py) against hand computations of the anchor's formulas (plain loops over entries; numpy's
percentile for the medians, as the anchor calls it): Jin-Ying/Multi-Level-Logit-Distillation
mdistiller/distillers/KD_ours.py, and its logit-standardized form (sunshangquan/logit-standardization-KD
mdistiller/distillers/MLKD.py)."""
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from errors import ConfigError
from losses import DistillBatch, DistillationObjective
from losses.kd import soft_target_kl
from losses.mlkd import (MLKDBatchTerm, MLKDClassTerm, MLKDInstanceTerm, TwoViewCrossEntropyTerm,
                         teacher_confidence_masks)
from tests.helpers import CFG_DIR

TEMPERATURES = [4.0, 3.0, 5.0, 2.0, 6.0]


def two_view_batch(batch_size=8, num_classes=5, seed=0, scale=3.0) -> DistillBatch:
    generator = torch.Generator().manual_seed(seed)

    def logits(grad: bool):
        return (scale * torch.randn(batch_size, num_classes, generator=generator)).requires_grad_(grad)
    targets = torch.randint(num_classes, (batch_size,), generator=generator)
    common = dict(inputs=torch.zeros(batch_size), targets=targets, indices=torch.arange(batch_size))
    strong = DistillBatch(student_logits=logits(True), teacher_logits=logits(False), **common)
    return DistillBatch(student_logits=logits(True), teacher_logits=logits(False), views={"strong": strong}, **common)


# ------------------------------------------------------------------------------------ hand computations
def softmax(row, t=1.0):
    top = max(row)
    exps = [math.exp((a - top) / t) for a in row]
    return [e / sum(exps) for e in exps]


def standardized(row):
    mean = sum(row) / len(row)
    std = math.sqrt(sum((a - mean) ** 2 for a in row) / (len(row) - 1))  # torch's unbiased std, as the anchor
    return [(a - mean) / (1e-7 + std) for a in row]


def lists(tensor):
    return tensor.detach().tolist()


def kl_rows(student, teacher, t, standardize=False):
    """T^2 sum_k p_t log(p_t / p_s) of each row."""
    out = []
    for z, v in zip(lists(student), lists(teacher)):
        if standardize:
            z, v = standardized(z), standardized(v)
        ps, pt = softmax(z, t), softmax(v, t)
        out.append(t * t * sum(b * (math.log(b) - math.log(a)) for a, b in zip(ps, pt)))
    return out


def masks(teacher):
    """The anchor's masks: row confidence <= np.percentile(., 50), class confidence <= np.percentile(., 50)."""
    probs = [softmax(v) for v in lists(teacher)]
    confidence = np.array([max(p) for p in probs])
    class_confidence = np.array([sum(p[k] for p in probs) for k in range(len(probs[0]))])
    return (confidence <= np.percentile(confidence, 50), class_confidence <= np.percentile(class_confidence, 50))


def reduced(values_and_masks, masking, matrix_size=None):
    """The anchor's `(loss * mask).mean()` for a reduced loss (masking anchor), its reduce=False form (per_row), or
    no mask. `values` are per-row numbers (instance) or a matrix (lists of rows) divided by its size."""
    values, mask = values_and_masks
    if matrix_size is None:
        if masking == "anchor":
            return sum(values) / len(values) * (sum(mask) / len(mask))
        if masking == "per_row":
            return sum(v * m for v, m in zip(values, mask)) / len(values)
        return sum(values) / len(values)
    flat = [(x, mask[j]) for row in values for j, x in enumerate(row)]
    if masking == "anchor":
        return sum(x for x, _ in flat) * (sum(mask) / len(mask))
    if masking == "per_row":
        return sum(x * m for x, m in flat) / len(flat)
    return sum(x for x, _ in flat)


def gram_difference(student, teacher, t, level, standardize=False):
    """(G_t - G_s)^2 / size, entry by entry: G = P P^T (batch level, B x B) or P^T P (class level, K x K)."""
    def probs(logits):
        return [softmax(standardized(r) if standardize else r, t) for r in lists(logits)]
    ps, pt = probs(student), probs(teacher)
    b, k = len(ps), len(ps[0])
    if level == "batch":
        def gram(p, i, j):
            return sum(p[i][c] * p[j][c] for c in range(k))
        size = b
    else:
        def gram(p, i, j):
            return sum(p[r][i] * p[r][j] for r in range(b))
        size = k
    return [[(gram(pt, i, j) - gram(ps, i, j)) ** 2 / size for j in range(size)] for i in range(size)]


def hand_instance(batch, temperatures, masking, standardize=False, anchor_strong_sum=True):
    weak, strong = batch, batch.views["strong"]
    row_mask, _ = masks(weak.teacher_logits)
    total = 0.0
    for position, t in enumerate(temperatures):
        total += reduced((kl_rows(weak.student_logits, weak.teacher_logits, t, standardize), row_mask), masking)
        view = weak if anchor_strong_sum and position >= 3 else strong
        rows = kl_rows(view.student_logits, view.teacher_logits, t, standardize)
        total += sum(rows) / len(rows)
    return total


def hand_level(batch, temperatures, masking, level, strong_view=False, standardize=False):
    row_mask, class_mask = masks(batch.teacher_logits)
    mask = row_mask if level == "batch" else class_mask
    total = 0.0
    for view in (batch, batch.views["strong"]) if strong_view else (batch,):
        for t in temperatures:
            matrix = gram_difference(view.student_logits, view.teacher_logits, t, level, standardize)
            total += reduced((matrix, mask), masking, matrix_size=len(matrix))
    return total


# ------------------------------------------------------------------------------------------------- tests
def test_confidence_masks_are_the_anchors_percentiles():
    for seed in range(4):
        batch = two_view_batch(batch_size=7 + seed, seed=seed)  # odd and even sizes: the median interpolates
        rows, _, classes = teacher_confidence_masks(batch.teacher_logits)
        expected_rows, expected_classes = masks(batch.teacher_logits)
        assert rows.tolist() == expected_rows.tolist() and classes.tolist() == expected_classes.tolist()


@pytest.mark.parametrize("masking", ["anchor", "per_row", "none"])
@pytest.mark.parametrize("standardize", [False, True])
def test_instance_level(masking, standardize):
    batch = two_view_batch(seed=1)
    term = MLKDInstanceTerm(temperatures=TEMPERATURES, masking=masking, standardize=standardize)
    assert term(batch).item() == pytest.approx(hand_instance(batch, TEMPERATURES, masking, standardize), rel=1e-5)
    paper = MLKDInstanceTerm(temperatures=TEMPERATURES, masking=masking, anchor_strong_sum=False)
    assert paper(batch).item() == pytest.approx(hand_instance(batch, TEMPERATURES, masking, False, False), rel=1e-5)


@pytest.mark.parametrize("level,term_class", [("batch", MLKDBatchTerm), ("class", MLKDClassTerm)])
@pytest.mark.parametrize("masking", ["anchor", "per_row", "none"])
def test_batch_and_class_levels(level, term_class, masking):
    batch = two_view_batch(seed=2)
    term = term_class(temperatures=TEMPERATURES, masking=masking)
    assert term(batch).item() == pytest.approx(hand_level(batch, TEMPERATURES, masking, level), rel=1e-5)
    both = term_class(temperatures=TEMPERATURES, masking=masking, strong_view=True, standardize=True)
    expected = hand_level(batch, TEMPERATURES, masking, level, strong_view=True, standardize=True)
    assert both(batch).item() == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_on_both_views():
    batch = two_view_batch(seed=3)
    expected = 0.0
    for view in (batch, batch.views["strong"]):
        for z, y in zip(lists(view.student_logits), view.targets.tolist()):
            expected -= math.log(softmax(z)[y]) / len(view.targets)
    assert TwoViewCrossEntropyTerm()(batch).item() == pytest.approx(expected, rel=1e-5)


def test_limiting_cases():
    """One temperature, no mask: the instance level is KD on each view (losses/kd.py); the anchor's masking of a
    reduced loss only scales it by the kept fraction; a strong view equal to the weak one leaves the relation levels
    unchanged by strong_view except for a factor of two."""
    batch = two_view_batch(seed=4)
    strong = batch.views["strong"]
    for t in (1.0, 4.0):
        kd = (soft_target_kl(batch.student_logits, batch.teacher_logits, t)
              + soft_target_kl(strong.student_logits, strong.teacher_logits, t))
        assert MLKDInstanceTerm(temperatures=[t], masking="none")(batch).item() == pytest.approx(kd.item(), rel=1e-6)
    row_mask, _ = masks(batch.teacher_logits)
    weak_kd = soft_target_kl(batch.student_logits, batch.teacher_logits, 4.0).item()
    strong_kd = soft_target_kl(strong.student_logits, strong.teacher_logits, 4.0).item()
    anchor = MLKDInstanceTerm(temperatures=[4.0], masking="anchor")(batch).item()
    assert anchor == pytest.approx(weak_kd * row_mask.mean() + strong_kd, rel=1e-6)
    same = DistillBatch(**{**batch.__dict__, "views": {"strong": batch}})
    for term_class in (MLKDBatchTerm, MLKDClassTerm):
        one = term_class(temperatures=[4.0], masking="none")(same)
        assert term_class(temperatures=[4.0], masking="none", strong_view=True)(same).item() == pytest.approx(
            2 * one.item(), rel=1e-6)
        matched = DistillBatch(**{**batch.__dict__, "student_logits": batch.teacher_logits.clone()})
        assert term_class()(matched).item() == pytest.approx(0.0, abs=1e-7)  # a student that is the teacher


def test_gradient_reaches_the_student_of_both_views_only():
    batch = two_view_batch(seed=5)
    terms = {"ce": TwoViewCrossEntropyTerm(0.1), "instance_level": MLKDInstanceTerm(0.9),
             "batch_level": MLKDBatchTerm(0.9, strong_view=True), "class_level": MLKDClassTerm(0.9)}
    total, values = DistillationObjective(terms)(batch)
    total.backward()
    assert set(values) == set(terms)
    for view in (batch, batch.views["strong"]):
        assert view.student_logits.grad.abs().sum() > 0 and view.teacher_logits.grad is None
    assert DistillationObjective(terms).train_views == {"strong": list(terms)}


def test_bad_options_name_the_key():
    with pytest.raises(ConfigError, match="temperatures must be a non-empty list"):
        MLKDInstanceTerm(temperatures=[])
    with pytest.raises(ConfigError, match="masking must be one of"):
        MLKDClassTerm(masking="paper")


def test_configs_carry_the_anchors_defaults():
    """cfg/kd/mlkd.yaml: mdistiller/engine/cfg.py's KD defaults (CE 0.1, KD 0.9, T 4) and KD_ours' temperatures;
    cfg/kd/mlkd_ls.yaml: the LSKD README command (--base-temp 2 --kd-weight 9), standardizing the instance level."""
    mlkd, ls = (OmegaConf.load(f"{CFG_DIR}/kd/{name}.yaml").terms for name in ("mlkd", "mlkd_ls"))
    levels = ("instance_level", "batch_level", "class_level")
    assert mlkd.ce.weight == ls.ce.weight == 0.1
    assert all(mlkd[level].weight == 0.9 and list(mlkd[level].temperatures) == TEMPERATURES for level in levels)
    assert all(ls[level].weight == 9.0 and list(ls[level].temperatures) == [2.0, *TEMPERATURES[1:]] for level in levels)
    assert [ls[level].standardize for level in levels] == [True, False, False]
    assert not any(mlkd[level].standardize for level in levels)
