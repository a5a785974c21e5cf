"""SSKD against a hand-written computation of the paper's four losses and its teacher-head pre-training."""
import math

import numpy as np
import pytest
import torch

from errors import ConfigError
from losses import DistillBatch
from losses.sskd import SSKDTerm, rotate_and_interleave

B, K, D_S, D_T = 5, 6, 4, 7


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_rotations_are_interleaved_per_image():
    images = randn(2, 3, 4, 4, seed=0)
    rotated = rotate_and_interleave(images)
    assert rotated.shape == (8, 3, 4, 4)
    for i in range(2):
        for k in range(4):
            expected = np.rot90(images[i].numpy(), k, axes=(1, 2))
            np.testing.assert_array_equal(rotated[4 * i + k].numpy(), expected)


def softmax(values, t):
    exps = [math.exp(v / t) for v in values]
    return [e / sum(exps) for e in exps]


def kl(teacher_row, student_row, t):
    p, q = softmax(teacher_row, t), softmax(student_row, t)
    return t * t * sum(a * math.log(a / b) for a, b in zip(p, q))


def kept_rows(teacher_rows, answers, ratio):
    """Rows ranked right by the teacher, plus the `ratio` share of the wrong ones with the best rank."""
    ranks = [sum(v > row[a] for v in row) for row, a in zip(teacher_rows, answers)]
    wrong = sum(r > 0 for r in ranks)
    order = sorted(range(len(ranks)), key=lambda j: (ranks[j], j))
    return sorted(order[:len(ranks) - wrong + int(wrong * ratio)])


def cosine(u, v):
    return sum(a * b for a, b in zip(u, v)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))


def similarity(projections):
    """Rows: rotated images (sample-major), columns: unrotated images."""
    rows = [projections[4 * i + k] for i in range(B) for k in (1, 2, 3)]
    return [[cosine(r, projections[4 * i]) for i in range(B)] for r in rows]


def make_term(**kwargs):
    torch.manual_seed(0)
    term = SSKDTerm(**kwargs)
    term.setup({"embedding": torch.Size([4 * B, D_S])}, {"embedding": torch.Size([4 * B, D_T])}, K, 100)
    return term


def make_batch(phase=None):
    labels = torch.arange(B) % K
    return DistillBatch(inputs=torch.zeros(4 * B), targets=labels.repeat_interleave(4), indices=torch.arange(4 * B),
                        student_logits=randn(4 * B, K, seed=1).requires_grad_(),
                        teacher_logits=2 * randn(4 * B, K, seed=2),
                        student_features={"embedding": randn(4 * B, D_S, seed=3).requires_grad_()},
                        teacher_features={"embedding": randn(4 * B, D_T, seed=4)}, phase=phase)


def test_student_loss_matches_the_four_terms_of_the_paper():
    weights = dict(weight_ce=0.3, weight_kd=0.9, weight_tf=2.7, weight_ss=10.0)
    term = make_term(**weights, ratio_tf=0.5, ratio_ss=0.75)
    batch = make_batch()
    value = term(batch)

    z, v = batch.student_logits.tolist(), batch.teacher_logits.tolist()
    labels = batch.targets[::4].tolist()
    ce = sum(-math.log(softmax(z[4 * i], 1.0)[labels[i]]) for i in range(B)) / B
    kd = sum(kl(v[4 * i], z[4 * i], 4.0) for i in range(B)) / B
    rotated = [4 * i + k for i in range(B) for k in (1, 2, 3)]
    rotated_labels = [labels[i] for i in range(B) for _ in range(3)]
    keep = kept_rows([v[r] for r in rotated], rotated_labels, 0.5)
    assert 0 < len(keep) < len(rotated)  # the filter is exercised
    tf = sum(kl(v[rotated[j]], z[rotated[j]], 4.0) for j in keep) / len(keep)
    with torch.no_grad():
        s_sim = similarity(term.student_head(batch.student_features["embedding"]).tolist())
        t_sim = similarity(term.teacher_head(batch.teacher_features["embedding"]).tolist())
    answers = [i for i in range(B) for _ in range(3)]
    keep = kept_rows(t_sim, answers, 0.75)
    ss = sum(kl(t_sim[j], s_sim[j], 0.5) for j in keep) / len(keep)
    expected = 0.3 * ce + 0.9 * kd + 2.7 * tf + 10.0 * ss
    assert value.item() == pytest.approx(expected, rel=1e-5)

    value.backward()
    assert batch.student_logits.grad.abs().sum() > 0 and batch.student_features["embedding"].grad.abs().sum() > 0
    assert all(p.grad is not None for p in term.student_head.parameters())
    assert all(p.grad is None for p in term.teacher_head.parameters())  # the teacher's head stays put


def test_teacher_head_pretraining_is_contrastive_cross_entropy_on_the_frozen_teacher():
    term = make_term()
    batch = make_batch(phase="teacher_head")
    value = term(batch)
    with torch.no_grad():
        t_sim = similarity(term.teacher_head(batch.teacher_features["embedding"]).tolist())
    answers = [i for i in range(B) for _ in range(3)]
    expected = sum(-math.log(softmax(row, 1.0)[a]) for row, a in zip(t_sim, answers)) / len(answers)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in term.teacher_head.parameters())
    assert batch.student_logits.grad is None and batch.student_features["embedding"].grad is None


def test_expanded_batch_and_bad_input():
    term = SSKDTerm()
    x, y, idx = term.expand_batch(randn(3, 1, 2, 2, seed=0), torch.tensor([7, 8, 9]), torch.tensor([0, 1, 2]))
    assert x.shape == (12, 1, 2, 2) and y.tolist() == [7] * 4 + [8] * 4 + [9] * 4 and idx.tolist()[4:8] == [1] * 4
    with pytest.raises(ConfigError, match="needs square images"):
        term.bind_teacher(torch.nn.Identity(), torch.zeros(2, 40))
    with pytest.raises(ConfigError, match="ratio_ss"):
        SSKDTerm(ratio_ss=1.5)
