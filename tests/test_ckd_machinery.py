"""Comparative KD's training machinery (alextxu/ckd), each against an independent computation of the anchor's:
the tuple pool and batches of CKDSample, the comparative term of CKDTrainHelpers (two student forwards), the
class-grouped batches of RKDSampler and RKD on logits, the mixup of MixupTrainHelpers (cached outputs, `loss_fn
0`), and a cached teacher whose student sees fresh augmentations (CachedSubset)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from datamodules.mixing import MixupInterpolated
from datamodules.tuples import ClassGroupedBatchSampler, TupleBatchSampler, tuple_pool
from errors import ConfigError
from losses import DistillationObjective, DistillBatch
from losses.base import ClassGroupedBatches, TupleBatches
from losses.ckd import CKDTerm
from losses.kd import TeacherCrossEntropyTerm
from losses.rkd import RKDTerm
from models.teachers import FrozenTeacher
from tasks.distillation import DistillationTask


def ckd_sample_enumeration(count, positives, negatives):
    """CKDSample.__init__'s enumeration branch, transcribed: every combination, every choice of positives."""
    tuples = set()
    for combo in itertools.combinations(range(count), positives + negatives):
        for chosen in itertools.combinations(range(positives + negatives), positives):
            tuples.add(tuple([combo[i] for i in chosen] + [combo[i] for i in range(len(combo)) if i not in chosen]))
    return tuples


@pytest.mark.parametrize("count,positives,negatives", [(5, 1, 1), (6, 2, 1)])
def test_small_pools_are_every_tuple_of_ckd_sample(count, positives, negatives):
    pool = tuple_pool(count, positives, negatives, 100_000, np.random.default_rng(0))
    assert {tuple(row) for row in pool.tolist()} == ckd_sample_enumeration(count, positives, negatives)
    assert len(pool) == math.comb(count, positives) * math.comb(count - positives, negatives)
    capped = tuple_pool(count, positives, negatives, 7, np.random.default_rng(0))
    assert len({tuple(row) for row in capped.tolist()}) == 7  # a random part of them, no repeats


def test_large_pools_are_distinct_tuples_of_distinct_examples():
    pool = tuple_pool(300, 2, 1, 2_000, np.random.default_rng(1))  # C(300,2) * 298 >> 5 x 2000: drawn
    assert pool.shape == (2_000, 3) and len({tuple(r) for r in pool.tolist()}) == 2_000
    assert (pool[:, 0] < pool[:, 1]).all()  # positives sorted, as CKDSample sorts them
    assert all(len(set(row)) == 3 for row in pool.tolist()) and pool.min() >= 0 and pool.max() < 300
    with pytest.raises(ConfigError, match="need at least 3 training examples"):
        tuple_pool(2, 2, 1, 10, np.random.default_rng(0))


def test_tuple_batches_walk_the_pool_in_epochs_of_ckd_eval_every_steps():
    sampler = TupleBatchSampler(count=10, batch_size=4, seed=3, views=1, fresh_draws=False, positives=1,
                                negatives=1, pool_size=100_000)
    assert len(sampler.pool) == 90 and len(sampler) == 3  # ceil(10 / 4): train_student.py eval_every
    pool = {tuple(r) for r in sampler.pool.tolist()}
    seen = []
    for epoch in range(8):  # 8 epochs x 3 steps x 4 tuples = 96 > 90: the walk starts a second pass
        sampler.set_epoch(epoch)
        for rows in sampler:
            assert len(rows) == 8  # 4 tuples of 2: positives block, then negatives block
            tuples = list(zip(rows[:4], rows[4:]))
            assert set(tuples) <= pool
            seen += tuples
    assert sorted(seen[:90]) == sorted(pool)  # the first pass is every tuple once
    sampler.set_epoch(2)
    assert list(sampler) == list(sampler)  # a function of (seed, epoch): a resumed run replays it
    views = TupleBatchSampler(count=10, batch_size=4, seed=3, views=3, fresh_draws=False, positives=1,
                              negatives=1, pool_size=100_000)
    views.set_epoch(2)
    sampler.set_epoch(2)
    for encoded, plain in zip(views, sampler):  # a cached teacher's view datasets: position * views + view
        assert [e // 3 for e in encoded] == plain and all(0 <= e % 3 < 3 for e in encoded)
    draws = TupleBatchSampler(count=10, batch_size=4, seed=3, views=1, fresh_draws=True, positives=1,
                              negatives=1, pool_size=100_000)
    rows = next(iter(draws))
    assert [r[0] for r in rows] == next(iter(sampler.__class__(10, 4, 3, 1, False, 1, 1, 100_000)))
    assert len({r[1] for r in rows}) == len(rows)  # a fresh transform draw for every row


def by_hand_ckd(student, teacher, labels, tuples, positives, negatives, num_classes, weight_label):
    """helper/CKDTrainHelpers.py + CKDSample.__getitem__, in plain Python: per tuple the positives' mean minus
    the negatives' mean of logits and of one-hot labels; MSELoss (mean over tuples x classes) of each."""
    def mean(rows):
        return [sum(r[k] for r in rows) / len(rows) for k in range(num_classes)]

    def one_hot(label):
        return [1.0 if k == label else 0.0 for k in range(num_classes)]
    relational = label = 0.0
    for t in range(tuples):
        plus = range(t * positives, (t + 1) * positives)
        minus = range(tuples * positives + t * negatives, tuples * positives + (t + 1) * negatives)
        z = [a - b for a, b in zip(mean([student[i] for i in plus]), mean([student[i] for i in minus]))]
        v = [a - b for a, b in zip(mean([teacher[i] for i in plus]), mean([teacher[i] for i in minus]))]
        y = [a - b for a, b in zip(mean([one_hot(labels[i]) for i in plus]), mean([one_hot(labels[i]) for i in minus]))]
        relational += sum((a - b) ** 2 for a, b in zip(z, v))
        label += sum((a - b) ** 2 for a, b in zip(z, y))
    return (relational + weight_label * label) / (tuples * num_classes)


@pytest.mark.parametrize("pos_and_neg", [2, 3])
def test_ckd_term_on_tuples_is_ckd_train_helpers(pos_and_neg):
    term = CKDTerm(weight_label=0.7, pos_and_neg=pos_and_neg)
    plan = term.train_batches
    assert (plan.positives, plan.negatives) == (pos_and_neg - pos_and_neg // 2, pos_and_neg // 2)
    tuples, classes = 4, 5
    rows = tuples * pos_and_neg
    generator = torch.Generator().manual_seed(pos_and_neg)
    batch = DistillBatch(inputs=torch.zeros(rows), indices=torch.arange(rows),
                         targets=torch.randint(classes, (rows,), generator=generator),
                         student_logits=torch.randn(rows, classes, generator=generator).requires_grad_(True),
                         teacher_logits=torch.randn(rows, classes, generator=generator))
    expected = by_hand_ckd(batch.student_logits.tolist(), batch.teacher_logits.tolist(), batch.targets.tolist(),
                           tuples, plan.positives, plan.negatives, classes, 0.7)
    value = term(batch)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert batch.student_logits.grad.abs().sum() > 0
    assert plan.blocks(rows) == [tuples * plan.positives, tuples * plan.negatives]
    with pytest.raises(RuntimeError, match="not made of"):
        plan.blocks(rows + 1)


def test_the_student_sees_positives_and_negatives_in_two_forwards():
    """CKDTrainHelpers.model_forward calls the student once on the positives and once on the negatives, so
    BatchNorm normalises each block by its own statistics."""
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = FrozenTeacher(nn.Sequential(nn.Linear(3, 4)))
    objective = DistillationObjective({"ckd": CKDTerm(pos_and_neg=3)})
    task = DistillationTask(student, teacher, objective, 4, torch.optim.SGD)
    x = torch.randn(12, 3) * torch.arange(1, 13).unsqueeze(1)  # blocks of 8 and 4 rows, unlike statistics
    logits, _ = task._student_forward(x)
    torch.testing.assert_close(logits, torch.cat([student(x[:8]), student(x[8:])]))
    assert not torch.allclose(logits, student(x))


def test_class_grouped_batches_are_rkd_sampler_batches():
    labels = np.repeat(np.arange(6), [7, 7, 3, 7, 7, 7])
    sampler = ClassGroupedBatchSampler(count=len(labels), batch_size=12, seed=0, views=1, fresh_draws=False,
                                       labels=labels, per_class=5)
    assert len(sampler) == math.ceil(len(labels) / 12)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        for rows in sampler:
            assert len(rows) == 12
            groups = [list(g) for _, g in itertools.groupby(labels[rows])]
            assert all(len(g) == min(5, (labels == g[0]).sum()) for g in groups[:-1])  # a cut last group
            assert len({g[0] for g in groups}) == len(groups) and len(set(rows)) == len(rows)
    assert RKDTerm(per_class=5).train_batches == ClassGroupedBatches(5)
    with pytest.raises(ConfigError, match="per_class must be a positive integer"):
        RKDTerm(per_class=0)


def test_rkd_on_logits_is_rkd_on_the_logits_as_features():
    generator = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    batch = DistillBatch(inputs=torch.zeros(6), targets=torch.zeros(6, dtype=torch.long), indices=torch.arange(6),
                         student_logits=student, teacher_logits=teacher)
    on_logits = RKDTerm(student_tap="logits", teacher_tap="logits")
    assert on_logits.student_taps == () and on_logits.teacher_taps == ()  # a cached teacher can serve it
    features = DistillBatch(inputs=torch.zeros(6), targets=torch.zeros(6, dtype=torch.long), indices=torch.arange(6),
                            student_logits=torch.zeros(6, 5), teacher_logits=torch.zeros(6, 5),
                            student_features={"embedding": student}, teacher_features={"embedding": teacher})
    assert on_logits(batch).item() == pytest.approx(RKDTerm()(features).item(), rel=1e-6)


def test_ckd_mixup_is_cross_entropy_to_each_component_s_teacher_softmax():
    """MixupTrainHelpers with --loss_fn 0: w_cls (lam CE(s, y_i) + (1 - lam) CE(s, y_j)) + w_rel (lam CE(s,
    softmax v_i) + (1 - lam) CE(s, softmax v_j)), on cached outputs; no teacher call on the mixed input."""
    generator = torch.Generator().manual_seed(5)
    x, y = torch.randn(6, 3, 4, 4, generator=generator), torch.randint(7, (6,), generator=generator)
    cached = 3 * torch.randn(6, 7, generator=generator)
    student = torch.randn(6, 7, generator=generator)
    augment = MixupInterpolated(alpha=1.0)
    assert augment.teacher_mix == "probabilities" and augment.interpolates_teacher
    mixed, soft, _ = augment(x, y, 7, seed=1, step=4)
    mix = augment._draw_for(x, seed=1, step=4)
    lam, partner = mix.weights[0], mix.partners[1]
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[partner])
    teacher = augment.interpolate(cached, x, seed=1, step=4)
    batch = DistillBatch(inputs=mixed, targets=y, indices=torch.arange(6), student_logits=student,
                         teacher_logits=teacher, soft_targets=soft)
    log_q = student.log_softmax(dim=1).tolist()
    p = cached.softmax(dim=1).tolist()
    by_hand = sum(-lam * sum(a * b for a, b in zip(p[i], log_q[i]))
                  - (1 - lam) * sum(a * b for a, b in zip(p[int(partner[i])], log_q[i])) for i in range(6)) / 6
    assert TeacherCrossEntropyTerm(temperature=1.0)(batch).item() == pytest.approx(by_hand, rel=1e-5)
    labels = sum(-lam * log_q[i][int(y[i])] - (1 - lam) * log_q[i][int(y[partner[i]])] for i in range(6)) / 6
    assert nn.functional.cross_entropy(student, soft).item() == pytest.approx(labels, rel=1e-5)
    with pytest.raises(ConfigError, match="teacher_mix must be one of"):
        MixupInterpolated(teacher_mix="features")


def test_teacher_cross_entropy_is_kd_plus_the_teacher_entropy():
    generator = torch.Generator().manual_seed(6)
    student, teacher = torch.randn(5, 4, generator=generator), torch.randn(5, 4, generator=generator)
    batch = DistillBatch(inputs=torch.zeros(5), targets=torch.zeros(5, dtype=torch.long), indices=torch.arange(5),
                         student_logits=student, teacher_logits=teacher)
    from losses.kd import soft_target_kl
    p = (teacher / 4).softmax(dim=1)
    entropy = -(p * p.log()).sum(dim=1).mean()
    expected = soft_target_kl(student, teacher, 4.0) + 16 * entropy
    assert TeacherCrossEntropyTerm(temperature=4.0)(batch).item() == pytest.approx(expected.item(), rel=1e-5)


def test_tuple_batches_reach_the_term_through_the_datamodule(tmp_path, monkeypatch):
    """A real datamodule with a random transform and a cached teacher whose student sees fresh augmentations
    (CachedSubset): the loader serves tuples laid out as the term reads them, each row freshly augmented, and the
    teacher answers every row from its one cached view."""
    from omegaconf import OmegaConf

    from datamodules.cifar import CIFAR10DataModule
    from runs.teacher_cache import cached_teacher
    from runs.training import use_term_batches
    from tests.fake_cifar import patch_cifar_md5, write_fake_cifar
    patch_cifar_md5(monkeypatch)
    write_fake_cifar(tmp_path / "data", "cifar10", n_train=12, n_test=4)
    datamodule = CIFAR10DataModule(name="cifar10", num_classes=10, input_shape=[3, 32, 32], batch_size=2, val_size=0,
                                   data_dir=str(tmp_path / "data"), seed=1)
    datamodule.limit_train_pool(6)
    datamodule.setup("fit")
    cfg = OmegaConf.create({"teacher": {"views": None, "view_seed": 0, "student_views": "fresh"},
                            "data": {"name": "cifar10", "batch_size": 2}, "trainer": {"accelerator": "cpu"},
                            "paths": {"output_dir": str(tmp_path / "out")}})
    torch.manual_seed(0)
    inner = FrozenTeacher(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10)))
    teacher, info = cached_teacher(inner, datamodule, cfg, [], "single")
    assert info["teacher_cache"]["views"] == 1 and info["teacher_cache"]["student_views"] == "fresh"
    objective = DistillationObjective({"ckd": CKDTerm(pos_and_neg=3)})
    use_term_batches(datamodule, objective)
    loader = datamodule.train_dataloader()
    assert len(loader) == 3  # ceil(6 / 2) steps
    x, y, idx = next(iter(loader))
    assert x.shape[0] == 2 * 3 and set(idx.tolist()) <= set(datamodule.train_set.indices.tolist())
    logits, _ = teacher(x, idx)
    torch.testing.assert_close(logits, teacher.table[idx, 0])
    first = {}
    for epoch in range(4):  # the same examples come back in other crops and flips, the teacher's answer fixed
        loader.batch_sampler.set_epoch(epoch)
        for x, _, idx in loader:
            for image, index in zip(x, idx.tolist()):
                first.setdefault(index, []).append(image)
    assert any(len(images) > 1 and not all(torch.equal(images[0], im) for im in images[1:])
               for images in first.values())
    bad = OmegaConf.merge(cfg, {"teacher": {"views": 2}})
    with pytest.raises(ConfigError, match="caches one view per example"):
        cached_teacher(inner, datamodule, bad, [], "single")
    assert TupleBatches(1, 1, 5).size == 2
