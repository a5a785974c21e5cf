"""Each term against an independent computation of its paper's formula, written from the math."""
import math

import pytest
import torch

from errors import ConfigError
from losses import CrossEntropyTerm, DistillationObjective, DistillBatch, KDTerm


def make_batch(batch_size=8, num_classes=5, seed=0, requires_grad=True):
    generator = torch.Generator().manual_seed(seed)
    student = (3 * torch.randn(batch_size, num_classes, generator=generator)).requires_grad_(requires_grad)
    teacher = 3 * torch.randn(batch_size, num_classes, generator=generator)  # from the frozen teacher
    targets = torch.randint(num_classes, (batch_size,), generator=generator)
    return DistillBatch(inputs=torch.zeros(batch_size, 1), targets=targets, indices=torch.arange(batch_size),
                        student_logits=student, teacher_logits=teacher)


def reference_kd(student, teacher, temperature):
    """T^2 * (1/B) sum_i sum_k w_ik (log w_ik - log q_ik), w = softmax(v/T), q = softmax(z/T); loops, no torch.nn."""
    total = 0.0
    for z, v in zip(student.tolist(), teacher.tolist()):
        zs = [a / temperature for a in z]
        vs = [a / temperature for a in v]
        log_q = [a - math.log(sum(math.exp(b) for b in zs)) for a in zs]
        log_w = [a - math.log(sum(math.exp(b) for b in vs)) for a in vs]
        total += sum(math.exp(lw) * (lw - lq) for lw, lq in zip(log_w, log_q))
    return temperature ** 2 * total / len(student)


def reference_ce(student, targets):
    total = 0.0
    for z, y in zip(student.tolist(), targets.tolist()):
        total += math.log(sum(math.exp(a) for a in z)) - z[y]
    return total / len(student)


@pytest.mark.parametrize("temperature", [1.0, 4.0, 0.5])
def test_kd_matches_hinton_formula(temperature):
    batch = make_batch()
    value = KDTerm(temperature=temperature)(batch)
    assert value.item() == pytest.approx(reference_kd(batch.student_logits, batch.teacher_logits, temperature),
                                         rel=1e-5)


def test_kd_is_zero_when_student_equals_teacher_and_positive_otherwise():
    batch = make_batch()
    batch.student_logits = batch.teacher_logits.detach().clone() + 5.0  # softmax is shift invariant
    assert KDTerm()(batch).item() == pytest.approx(0.0, abs=1e-6)
    assert KDTerm()(make_batch(seed=1)).item() > 0


def test_ce_matches_formula():
    batch = make_batch()
    assert CrossEntropyTerm()(batch).item() == pytest.approx(reference_ce(batch.student_logits, batch.targets),
                                                             rel=1e-6)


def test_objective_weights_terms_and_gradient_reaches_student_only():
    batch = make_batch()
    objective = DistillationObjective({"ce": CrossEntropyTerm(weight=0.1), "kd": KDTerm(weight=0.9, temperature=4)})
    total, values = objective(batch)
    expected = 0.1 * reference_ce(batch.student_logits, batch.targets) + 0.9 * reference_kd(
        batch.student_logits, batch.teacher_logits, 4.0)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    assert set(values) == {"ce", "kd"}
    total.backward()
    assert batch.student_logits.grad is not None and batch.student_logits.grad.abs().sum() > 0


def test_zero_weight_switches_a_term_off():
    objective = DistillationObjective({"ce": CrossEntropyTerm(weight=0.0), "kd": KDTerm(weight=1.0)})
    total, values = objective(make_batch())
    assert list(values) == ["kd"] and total.item() == pytest.approx(values["kd"].item())
    # A training stage's weights replace the main ones and name the terms it computes.
    total, values = objective(make_batch(), weights={"ce": 2.0})
    assert list(values) == ["ce"] and total.item() == pytest.approx(2 * values["ce"].item())


def test_empty_objective_is_refused():
    # (negative weights and non-positive temperatures: tests/test_validation.py, where they are checked)
    with pytest.raises(ConfigError, match="no term with a positive weight"):
        DistillationObjective({"ce": CrossEntropyTerm(weight=0.0)})
