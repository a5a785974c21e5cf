"""CRD against the paper's NCE formula computed by hand, memory updates, the queue variant, its negatives (other
classes only, uniformly; or all examples) and its memory under two processes."""
import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from scipy import stats

from errors import ConfigError
from losses import DistillBatch
from losses.crd import CRDTerm

CLASSES = 10


def make_term(memory="bank", negatives=5, num_train=20, student_dim=6, teacher_dim=8, labels=None,
              kind="other_class", queue_size=7):
    torch.manual_seed(0)
    term = CRDTerm(feat_dim=4, num_negatives=negatives, temperature=0.5, momentum=0.5, memory=memory,
                   queue_size=queue_size, negatives=kind)
    term.bind_training_labels(torch.arange(num_train) % CLASSES if labels is None else labels)
    term.setup({"embedding": torch.Size([2, student_dim])}, {"embedding": torch.Size([2, teacher_dim])}, CLASSES,
               num_train)
    return term.train()


def make_batch(indices, student_dim=6, teacher_dim=8, labels=None, seed=1):
    generator = torch.Generator().manual_seed(seed)
    size = len(indices)
    indices = torch.as_tensor(indices)
    targets = indices % CLASSES if labels is None else labels[indices]
    return DistillBatch(inputs=torch.zeros(size), targets=targets,
                        indices=indices, student_logits=torch.zeros(size, 3),
                        teacher_logits=torch.zeros(size, 3),
                        student_features={"embedding": torch.randn(size, student_dim, generator=generator,
                                                                   requires_grad=True)},
                        teacher_features={"embedding": torch.randn(size, teacher_dim, generator=generator)})


def record_draws(term):
    """Make the term keep every (anchor labels, negatives, queue labels at draw time) it draws."""
    draws, draw = [], term._draw_negatives

    def recording(anchor_labels):
        queue_labels = term.memory_labels.clone() if term.memory == "queue" else None
        negatives = draw(anchor_labels)
        draws.append((anchor_labels.clone(), negatives, queue_labels))
        return negatives
    term._draw_negatives = recording
    return draws


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
    draws = record_draws(term)
    value = term(batch)
    negatives = draws[0][1]
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


def test_queue_loss_matches_the_nce_formula():
    """Positive: the other model's current embedding; negatives: queued embeddings of other classes."""
    term = make_term(memory="queue", num_train=20)
    term(make_batch([0, 1, 2, 3, 4]))  # queues five labelled embeddings and fixes Z
    old_student_queue, old_teacher_queue = term.memory_student.clone(), term.memory_teacher.clone()
    draws = record_draws(term)
    batch = make_batch([13, 16], seed=2)
    value = term(batch)
    negatives = draws[0][1]
    student = F.normalize(term.embed_student.linear(batch.student_features["embedding"]), dim=1).detach()
    teacher = F.normalize(term.embed_teacher.linear(batch.teacher_features["embedding"]), dim=1).detach()
    z_s, z_t = term.z_student.item(), term.z_teacher.item()
    expected = sum(reference_nce(s.tolist(), [t.tolist(), *old_teacher_queue[row].tolist()], 0.5, z_s, 20)
                   for s, t, row in zip(student, teacher, negatives))
    expected += sum(reference_nce(t.tolist(), [s.tolist(), *old_student_queue[row].tolist()], 0.5, z_t, 20)
                    for s, t, row in zip(student, teacher, negatives))
    assert value.item() == pytest.approx(expected / 2, rel=1e-4)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="memory must be 'bank' or 'queue'"):
        CRDTerm(memory="ring")
    with pytest.raises(ConfigError, match="16384, 128, 0.5"):  # (its temperature: runs/validation.py)
        CRDTerm(momentum=1)


def unbalanced_labels():
    """60 training examples: class 0 twice as common, every sixth example outside the pool (validation)."""
    labels = torch.tensor([0, 0, 1, 2, 3, 4] * 10)
    labels[torch.arange(60) % 6 == 5] = -1
    return labels


@pytest.mark.parametrize("memory", ["bank", "queue"])
def test_other_class_negatives_never_share_the_anchor_class(memory):
    labels = unbalanced_labels()
    term = make_term(memory, negatives=40, num_train=60, labels=labels, queue_size=25)
    draws = record_draws(term)
    pool = torch.nonzero(labels >= 0).squeeze(1)
    generator = torch.Generator().manual_seed(3)
    for step in range(30):
        term(make_batch(pool[torch.randperm(len(pool), generator=generator)[:12]], labels=labels, seed=step))
    for anchors, negatives, queue_labels in draws:
        drawn = labels[negatives] if memory == "bank" else queue_labels[negatives]
        assert not (drawn == anchors.unsqueeze(1)).any()
        if memory == "bank":
            assert (drawn >= 0).all()  # never an example outside the training pool
    if memory == "queue":  # by the end the queue is full of labelled embeddings, and draws still avoid the class
        assert (draws[-1][2] >= 0).all()


def test_other_class_draws_are_uniform_over_the_other_classes_examples():
    labels = unbalanced_labels()
    term = make_term(negatives=500, num_train=60, labels=labels)
    anchors = torch.tensor([0, 3]).repeat_interleave(100)
    counts = {0: torch.zeros(60), 3: torch.zeros(60)}
    for _ in range(4):
        negatives = term._draw_negatives(anchors)
        for anchor_class in counts:
            counts[anchor_class] += torch.bincount(negatives[anchors == anchor_class].flatten(), minlength=60)
    for anchor_class, count in counts.items():
        allowed = (labels >= 0) & (labels != anchor_class)
        assert count[~allowed].sum() == 0
        assert stats.chisquare(count[allowed].numpy()).pvalue > 1e-3  # equal expected counts


@pytest.mark.parametrize("memory", ["bank", "queue"])
def test_uniform_negatives_draw_every_example_alike(memory):
    labels = unbalanced_labels()
    term = make_term(memory, negatives=500, num_train=60, labels=labels, kind="uniform", queue_size=25)
    slots = len(term.memory_student)
    count = torch.bincount(term._draw_negatives(torch.zeros(200, dtype=torch.long)).flatten(), minlength=slots)
    drawable = labels >= 0 if memory == "bank" else torch.ones(slots, dtype=torch.bool)
    assert count[~drawable].sum() == 0 and (count[drawable] > 0).all()  # the anchor's class (0) included
    assert stats.chisquare(count[drawable].numpy()).pvalue > 1e-3


def test_other_class_negatives_need_the_training_labels():
    term = CRDTerm(negatives="other_class")
    with pytest.raises(ConfigError, match="negatives=uniform"):
        term.setup({"embedding": torch.Size([2, 6])}, {"embedding": torch.Size([2, 8])}, CLASSES, 20)
    uniform = CRDTerm(feat_dim=4, num_negatives=5, negatives="uniform")
    uniform.setup({"embedding": torch.Size([2, 6])}, {"embedding": torch.Size([2, 8])}, CLASSES, 20)
    assert uniform.num_train == 20 and len(uniform.bank_order_twice) == 40  # no labels: every slot a candidate
    with pytest.raises(ConfigError, match="negatives must be 'other_class'"):
        CRDTerm(negatives="relax")


def test_the_draw_stream_continues_after_loading_a_checkpoint():
    term = make_term()
    term(make_batch([0, 1, 2]))
    restored = make_term()
    restored.load_state_dict(term.state_dict())
    labels = torch.tensor([4, 7])
    assert torch.equal(term._draw_negatives(labels), restored._draw_negatives(labels))
    assert not torch.equal(term._draw_negatives(labels), make_term()._draw_negatives(labels))


# -- two processes (DDP) compute what one process with their joint batch computes ---------------------------
PROCESS_BATCH, STEPS, TRAIN = 6, 4, 40


def joint_batches():
    """STEPS batches of 2 * PROCESS_BATCH distinct training examples with their features."""
    generator = torch.Generator().manual_seed(7)
    return [make_batch(torch.randperm(TRAIN, generator=generator)[: 2 * PROCESS_BATCH], seed=step)
            for step in range(STEPS)]


def rows(batch, part):
    return DistillBatch(inputs=batch.inputs[part], targets=batch.targets[part], indices=batch.indices[part],
                        student_logits=batch.student_logits[part], teacher_logits=batch.teacher_logits[part],
                        student_features={"embedding": batch.student_features["embedding"][part]},
                        teacher_features={"embedding": batch.teacher_features["embedding"][part]})


def train_steps(memory, part=slice(None)):
    """The term's state and losses after STEPS training steps on `part` of each joint batch."""
    term = make_term(memory, negatives=9, num_train=TRAIN, queue_size=15)
    losses = [term(rows(batch, part)).item() for batch in joint_batches()]
    return {"state": {k: v.clone() for k, v in term.state_dict().items() if torch.is_tensor(v)}, "losses": losses}


def process(rank, port, memory, folder):
    torch.set_num_threads(1)  # a forked child's OpenMP pool is not the parent's (as in DataLoader workers)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        own = slice(rank * PROCESS_BATCH, (rank + 1) * PROCESS_BATCH)
        torch.save(train_steps(memory, own), os.path.join(folder, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("memory", ["bank", "queue"])
def test_two_processes_update_memory_as_one_process_with_their_joint_batch(memory, tmp_path):
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    # forked, not spawned: the children start without importing torch again (seconds each)
    torch.multiprocessing.start_processes(process, args=(port, memory, str(tmp_path)), nprocs=2, join=True,
                                          start_method="fork")
    ranks = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]
    single = train_steps(memory)
    for name, value in single["state"].items():  # memory, its labels and pointer, Z, embeddings
        for rank in ranks:
            torch.testing.assert_close(rank["state"][name], value, msg=name)
    # each process averages its own rows: the two averages' mean is the joint batch's loss
    joint = [(a + b) / 2 for a, b in zip(ranks[0]["losses"], ranks[1]["losses"])]
    assert joint == pytest.approx(single["losses"], rel=1e-5)


def test_the_datamodule_knows_which_examples_crd_draws_and_their_labels(data_dir, tmp_path):
    """What `build_distillation` hands the term: labels of the examples the loader draws, -1 elsewhere."""
    from runs.training import build_datamodule
    from tests.helpers import compose_config, tiny_overrides
    datamodule = build_datamodule(compose_config("distill", tiny_overrides(data_dir, tmp_path)))
    datamodule.setup("fit")
    labels, pool = datamodule.train_labels(), torch.as_tensor(datamodule.train_set.indices)
    truth = datamodule.train_set.base.tensors[1]
    assert torch.equal(labels[pool], truth[pool]) and len(pool) == 256  # data.train_subset
    outside = torch.ones(len(labels), dtype=torch.bool)
    outside[pool] = False
    assert (labels[outside] == -1).all() and outside.sum() == len(truth) - 256  # validation and the rest
    term = make_term(num_train=len(labels), labels=labels)
    assert term.num_train == 256 and torch.equal(term.bank_order_twice[:256].sort().values, pool.sort().values)
    assert torch.equal(term.bank_class_sizes, torch.bincount(truth[pool], minlength=CLASSES))


def test_crd_on_logits_embeds_the_logits_and_hooks_no_feature():
    """Comparative KD's CRD arm (alextxu/ckd helper/CRDTrainHelpers.py) contrasts the logits: the embeddings take
    num_classes inputs, no feature is tapped, and the loss equals CRD run on the logits given as features."""
    labels = torch.arange(40) % 4
    on_logits = CRDTerm(num_negatives=8, student_tap="logits", teacher_tap="logits")
    as_features = CRDTerm(num_negatives=8)
    assert on_logits.student_taps == on_logits.teacher_taps == () and not on_logits.reads_teacher_features
    for term in (on_logits, as_features):
        torch.manual_seed(0)
        term.bind_training_labels(labels)
        term.setup({"embedding": torch.Size([2, 4])}, {"embedding": torch.Size([2, 4])}, 4, 40)
    assert on_logits.embed_student.linear.in_features == on_logits.embed_teacher.linear.in_features == 4
    as_features.load_state_dict(on_logits.state_dict())
    student, teacher, idx = torch.randn(6, 4), torch.randn(6, 4), torch.arange(6)
    logit_batch = DistillBatch(inputs=student, targets=labels[idx], indices=idx, student_logits=student,
                               teacher_logits=teacher)
    feature_batch = DistillBatch(inputs=student, targets=labels[idx], indices=idx, student_logits=torch.zeros(6, 4),
                                 teacher_logits=torch.zeros(6, 4), student_features={"embedding": student},
                                 teacher_features={"embedding": teacher})
    torch.testing.assert_close(on_logits(logit_batch), as_features(feature_batch))
