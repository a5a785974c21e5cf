"""CRD against the paper's NCE formula computed by hand, memory updates, and the queue variant."""
import math

import pytest
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses import DistillBatch
from losses.crd import CRDTerm


def make_term(memory="bank", negatives=5, num_train=20, student_dim=6, teacher_dim=8):
    torch.manual_seed(0)
    term = CRDTerm(feat_dim=4, num_negatives=negatives, temperature=0.5, momentum=0.5, memory=memory, queue_size=7)
    term.setup({"embedding": torch.Size([2, student_dim])}, {"embedding": torch.Size([2, teacher_dim])}, 10, num_train)
    return term.train()


def make_batch(indices, student_dim=6, teacher_dim=8):
    generator = torch.Generator().manual_seed(1)
    size = len(indices)
    return DistillBatch(inputs=torch.zeros(size), targets=torch.zeros(size, dtype=torch.long),
                        indices=torch.tensor(indices), student_logits=torch.zeros(size, 3),
                        teacher_logits=torch.zeros(size, 3),
                        student_features={"embedding": torch.randn(size, student_dim, generator=generator,
                                                                   requires_grad=True)},
                        teacher_features={"embedding": torch.randn(size, teacher_dim, generator=generator)})


def reference_nce(anchor, bank_rows, temperature, z, num_train):
    """-(log P0/(P0 + m Pn) + sum_j log(m Pn/(Pj + m Pn))) for one anchor, plain floats."""
    scores = [math.exp(sum(a * b for a, b in zip(anchor, row)) / temperature) / z for row in bank_rows]
    m, pn = len(scores) - 1, 1.0 / num_train
    value = math.log(scores[0] / (scores[0] + m * pn + 1e-7))
    value += sum(math.log(m * pn / (s + m * pn + 1e-7)) for s in scores[1:])
    return -value


def test_bank_loss_matches_the_nce_formula_and_updates_memory():
    term = make_term()
    batch = make_batch([3, 11, 17])
    old_student_bank, old_teacher_bank = term.memory_student.clone(), term.memory_teacher.clone()
    torch.manual_seed(5)
    negatives = torch.randint(20, (3, 5))
    torch.manual_seed(5)
    value = term(batch)
    student = F.normalize(term.embed_student.linear(batch.student_features["embedding"]), dim=1).detach()
    teacher = F.normalize(term.embed_teacher.linear(batch.teacher_features["embedding"]), dim=1).detach()
    rows = torch.cat([batch.indices.view(-1, 1), negatives], dim=1)
    scores_s = [[math.exp((old_teacher_bank[r] @ s).item() / 0.5) for r in row] for s, row in zip(student, rows)]
    scores_t = [[math.exp((old_student_bank[r] @ t).item() / 0.5) for r in row] for t, row in zip(teacher, rows)]
    z_s = sum(map(sum, scores_s)) / (3 * 6) * 20
    z_t = sum(map(sum, scores_t)) / (3 * 6) * 20
    assert term.z_student.item() == pytest.approx(z_s, rel=1e-5)
    expected = sum(reference_nce(s.tolist(), old_teacher_bank[row].tolist(), 0.5, z_s, 20) for s, row in zip(student, rows))
    expected += sum(reference_nce(t.tolist(), old_student_bank[row].tolist(), 0.5, z_t, 20) for t, row in zip(teacher, rows))
    assert value.item() == pytest.approx(expected / 3, rel=1e-4)
    # Momentum update of the positives' slots, re-normalised; other slots untouched.
    torch.testing.assert_close(term.memory_student[batch.indices],
                               F.normalize(0.5 * old_student_bank[batch.indices] + 0.5 * student, dim=1))
    untouched = [i for i in range(20) if i not in (3, 11, 17)]
    torch.testing.assert_close(term.memory_teacher[untouched], old_teacher_bank[untouched])
    # Gradients reach the student's features and both embeddings, never the memory.
    value.backward()
    assert batch.student_features["embedding"].grad.abs().sum() > 0
    assert term.embed_student.linear.weight.grad.abs().sum() > 0
    assert term.embed_teacher.linear.weight.grad.abs().sum() > 0
    assert not term.memory_student.requires_grad


def test_partition_function_is_fixed_after_the_first_batch():
    term = make_term()
    term(make_batch([0, 1]))
    z = term.z_student.clone()
    term(make_batch([2, 3]))
    assert torch.equal(z, term.z_student)


def test_queue_memory_does_not_grow_with_the_dataset():
    term = make_term(memory="queue", num_train=10_000)
    assert term.memory_student.shape == (7, 4)
    batch = make_batch([5, 9000, 42])
    term(batch)
    student = F.normalize(term.embed_student.linear(batch.student_features["embedding"]), dim=1).detach()
    torch.testing.assert_close(term.memory_student[:3], student)
    assert term.queue_pointer.item() == 3
    term(make_batch([1, 2, 3, 4, 6]))
    assert term.queue_pointer.item() == (3 + 5) % 7


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="memory must be 'bank' or 'queue'"):
        CRDTerm(memory="ring")
    with pytest.raises(ConfigError, match="16384, 128, 0.5"):  # (its temperature: runs/validation.py)
        CRDTerm(momentum=1)
