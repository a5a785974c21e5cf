"""torchdistill's ICKD (ChSimLoss), SRD (SRDLoss) and DIST+ (DISTPlusLoss) against hand computations of the
formulas in torchdistill/losses/mid_level.py (plain Python loops over small random tensors), their trainable parts,
where their gradients go, and the configurations they refuse."""
from __future__ import annotations

import math

import pytest
import torch

from errors import ConfigError
from losses import DistillBatch
from losses.dist_plus import DISTPlusTerm
from losses.ickd import ICKDTerm
from losses.srd import SRDTerm


def randn(*shape, seed, grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(grad)


def batch_of(student_map, teacher_map, student_logits=None, teacher_logits=None, tap="stage:-1"):
    size = student_map.shape[0]
    student_logits = randn(size, 5, seed=11) if student_logits is None else student_logits
    teacher_logits = randn(size, 5, seed=12) if teacher_logits is None else teacher_logits
    return DistillBatch(inputs=torch.zeros(size), targets=torch.zeros(size, dtype=torch.long),
                        indices=torch.arange(size), student_logits=student_logits, teacher_logits=teacher_logits,
                        student_features={tap: student_map}, teacher_features={tap: teacher_map})


def set_up(term, batch):
    shapes = {tap: f.shape for tap, f in batch.student_features.items()}
    term.setup(shapes, {tap: f.shape for tap, f in batch.teacher_features.items()}, 5, 100)
    return term


def nested(tensor):
    return tensor.detach().double().tolist()


def softmax(row, t=1.0):
    peak = max(row)
    exps = [math.exp((v - peak) / t) for v in row]
    return [e / sum(exps) for e in exps]


def pearson(a, b, eps=1e-8):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    ca, cb = [x - ma for x in a], [y - mb for y in b]
    return sum(x * y for x, y in zip(ca, cb)) / (math.sqrt(sum(x * x for x in ca) * sum(y * y for y in cb)) + eps)


def assert_grads(term, batch, student_inputs):
    term.zero_grad()
    term(batch).backward()
    for tensor in student_inputs:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    for name, parameter in term.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert not any(f.requires_grad for f in batch.teacher_features.values()) and not batch.teacher_logits.requires_grad


# ----------------------------------------------------------------------------------------------- ICKD
def gram_rows_normalised(channels):
    """channels: C lists of positions -> C x C Gram matrix, each row divided by its L2 norm."""
    gram = [[sum(a * b for a, b in zip(ci, cj)) for cj in channels] for ci in channels]
    return [[v / max(math.sqrt(sum(w * w for w in row)), 1e-12) for v in row] for row in gram]


@pytest.mark.parametrize("student_shape,teacher_shape", [((3, 4, 3, 3), (3, 6, 3, 3)),
                                                         ((2, 5, 4, 4), (2, 3, 2, 2)),  # sizes may differ
                                                         ((3, 4, 7), (3, 4, 5))])  # 1-d maps
def test_ickd_channel_correlation(student_shape, teacher_shape):
    student, teacher = randn(*student_shape, seed=1, grad=True), randn(*teacher_shape, seed=2)
    batch = batch_of(student, teacher)
    term = set_up(ICKDTerm(), batch)
    conv, norm = term.embed
    assert conv.kernel_size in ((3, 3), (3,)) and conv.padding in ((1, 1), (1,)) and conv.bias is None
    assert conv.out_channels == teacher_shape[1] and norm.num_features == teacher_shape[1]
    embedded = nested(term.embed(student).flatten(2))
    teacher_flat = nested(teacher.flatten(2))
    size, channels = student_shape[0], teacher_shape[1]
    total = 0.0
    for b in range(size):
        gs, gt = gram_rows_normalised(embedded[b]), gram_rows_normalised(teacher_flat[b])
        total += sum((gs[i][j] - gt[i][j]) ** 2 for i in range(channels) for j in range(channels))
    expected = total / (channels * size * size)
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grads(term, batch, [student])


def test_ickd_is_zero_when_the_embedded_student_correlates_as_the_teacher():
    teacher = randn(3, 4, 3, 3, seed=3)
    term = set_up(ICKDTerm(), batch_of(randn(3, 4, 3, 3, seed=4), teacher))
    term.embed = torch.nn.Identity()
    assert term(batch_of(2 * teacher, teacher)).item() == pytest.approx(0.0, abs=1e-10)  # rows are scale-free


# ----------------------------------------------------------------------------------------------- SRD
def standardised_columns(rows, eps=1e-4):
    """BatchNorm1d(affine=False) in train mode by hand: each column by its mean and biased variance."""
    size, width = len(rows), len(rows[0])
    out = [[0.0] * width for _ in rows]
    for d in range(width):
        column = [row[d] for row in rows]
        mean = sum(column) / size
        variance = sum((v - mean) ** 2 for v in column) / size
        for b in range(size):
            out[b][d] = (column[b] - mean) / math.sqrt(variance + eps)
    return out


@pytest.mark.parametrize("exponent,temperature,student_shape,teacher_shape", [
    (4.0, 1.0, (4, 3, 2, 2), (4, 5, 3, 3)), (2.0, 3.0, (5, 6, 2, 2), (5, 6, 2, 2)), (1.0, 1.0, (4, 3), (4, 2))])
def test_srd_feature_and_logit_terms(exponent, temperature, student_shape, teacher_shape):
    student, teacher = randn(*student_shape, seed=5, grad=True), randn(*teacher_shape, seed=6)
    student_logits = randn(student_shape[0], 5, seed=7, grad=True)
    batch = batch_of(student, teacher, student_logits=student_logits)
    term = set_up(SRDTerm(exponent=exponent, temperature=temperature), batch)
    linear, norm = term.projector
    assert (linear.in_features, linear.out_features, norm.affine, norm.eps) == (
        student_shape[1], teacher_shape[1], False, 1e-4)
    weight, bias = nested(linear.weight), nested(linear.bias)

    def pooled(tensor):
        return [[sum(channel) / len(channel) for channel in example] for example in nested(tensor.flatten(2))] \
            if tensor.dim() > 2 else nested(tensor)

    projected = [[sum(w * x for w, x in zip(row, example)) + b for row, b in zip(weight, bias)]
                 for example in pooled(student)]
    s, t = standardised_columns(projected), standardised_columns(pooled(teacher))
    feature = math.log(sum(abs(a - b) ** exponent for rs, rt in zip(s, t) for a, b in zip(rs, rt)))
    kl = 0.0
    for z, v in zip(nested(student_logits), nested(batch.teacher_logits)):
        ps, pt = softmax(z, temperature), softmax(v, temperature)
        kl += sum(q * (math.log(q) - math.log(p)) for p, q in zip(ps, pt))
    expected = 2 * feature + kl / len(s)  # KLDivLoss 'batchmean', no T^2
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grads(term, batch, [student, student_logits])


def test_srd_refuses_a_non_positive_exponent():
    with pytest.raises(ConfigError, match="exponent"):
        SRDTerm(exponent=0)


# ----------------------------------------------------------------------------------------------- DIST+
@pytest.mark.parametrize("form", ["correlation", "distance"])
@pytest.mark.parametrize("beta,gamma,iota,kappa,tau", [(2.0, 2.0, 1.0, 1.0, 1.0), (1.0, 0.5, 3.0, 0.0, 4.0)])
def test_dist_plus_relations(beta, gamma, iota, kappa, tau, form):
    student, teacher = randn(4, 3, 2, 3, seed=8, grad=True), randn(4, 3, 2, 3, seed=9)
    student_logits = randn(4, 5, seed=10, grad=True)
    batch = batch_of(student, teacher, student_logits=student_logits)
    term = set_up(DISTPlusTerm(weight_inter=beta, weight_intra=gamma, weight_channel=iota, weight_spatial=kappa,
                               temperature=tau, channel_form=form), batch)
    ps = [softmax(z, tau) for z in nested(student_logits)]
    pt = [softmax(v, tau) for v in nested(batch.teacher_logits)]
    inter = sum(1 - pearson(a, b) for a, b in zip(ps, pt)) / len(ps)
    intra = sum(1 - pearson([a[k] for a in ps], [b[k] for b in pt]) for k in range(5)) / 5
    fs, ft = nested(student), nested(teacher)
    size, channels, height, width = student.shape
    correlations = [pearson([fs[b][c][h][w] for c in range(channels)], [ft[b][c][h][w] for c in range(channels)])
                    for b in range(size) for h in range(height) for w in range(width)]
    channel = sum(correlations) / len(correlations)
    summed_s = [[sum(fs[b][c][h][w] for c in range(channels)) for h in range(height) for w in range(width)]
                for b in range(size)]
    summed_t = [[sum(ft[b][c][h][w] for c in range(channels)) for h in range(height) for w in range(width)]
                for b in range(size)]
    positions = height * width
    spatial = sum(1 - pearson([summed_s[b][p] for b in range(size)], [summed_t[b][p] for b in range(size)])
                  for p in range(positions)) / positions
    channel_part = channel if form == "correlation" else 1 - channel
    expected = tau ** 2 * (beta * inter + gamma * intra) + iota * channel_part + kappa * spatial
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grads(term, batch, [student, student_logits])


def test_dist_plus_limits():
    """torchdistill's channel term is the correlation itself: -iota for a student map anti-correlated with the
    teacher's across channels (the other relations are distances, 0 when the relations agree)."""
    teacher = randn(4, 3, 2, 2, seed=12)
    logits = randn(4, 5, seed=13)
    batch = batch_of(teacher.clone(), teacher, student_logits=logits, teacher_logits=logits)
    same = set_up(DISTPlusTerm(weight_channel=1.0), batch)(batch).item()
    assert same == pytest.approx(1.0, abs=1e-6)  # DIST and spatial relations 0, channel correlation 1
    assert set_up(DISTPlusTerm(channel_form="distance"), batch)(batch).item() == pytest.approx(0.0, abs=1e-6)


def test_dist_plus_refuses_maps_of_different_shapes_and_unknown_forms():
    batch = batch_of(randn(2, 3, 2, 2, seed=14), randn(2, 4, 2, 2, seed=15))
    with pytest.raises(ConfigError, match="one shape with positions"):
        set_up(DISTPlusTerm(), batch)
    with pytest.raises(ConfigError, match="channel_form"):
        DISTPlusTerm(channel_form="cosine")


# ----------------------------------------------------------------------------------------------- the cells
@pytest.mark.parametrize("cell,optimizer,lr,weight_decay,published", [
    ("ickd_resnet34_resnet18", "AdamW", 0.0002, 0.0005, 68.34),
    ("srd_resnet34_resnet18", "SGD", 0.1, 0.0001, 71.92),
    ("dist_plus_resnet34_resnet18", "SGD", 0.1, 0.0001, 71.37)])
def test_torchdistill_cells_of_the_new_methods(cell, optimizer, lr, weight_decay, published):
    from tests.helpers import compose_config
    cfg = compose_config("distill", [f"experiment=torchdistill/{cell}"])
    assert cfg.optimizer._target_ == f"torch.optim.{optimizer}"
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.data.batch_size, cfg.trainer.devices) == (
        lr, weight_decay, 256, 1)
    assert cfg.published.value == published and cfg.teacher.batchnorm == "batch"  # published after fcc8727


@pytest.mark.parametrize("cell,batchnorm", [("dist_resnet34_resnet18", "batch"), ("kd_resnet34_resnet18", "running"),
                                            ("reviewkd_resnet34_resnet18", "running")])
def test_torchdistill_cells_run_the_teacher_mode_of_their_run(cell, batchnorm):
    """Runs logged in 2020-2021 had the teacher in eval mode; those published after May 2023 in train mode."""
    from tests.helpers import compose_config
    assert compose_config("distill", [f"experiment=torchdistill/{cell}"]).teacher.batchnorm == batchnorm
