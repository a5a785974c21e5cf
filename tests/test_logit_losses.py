"""Logit terms against independent computations of their papers' formulas (plain loops over entries)."""
import math

import pytest
import torch

from errors import ConfigError
from tests.helpers import METHODS, reads_features, reads_views
from losses import DistillBatch
from losses.kd_mse import KDMSETerm
from losses.semiparametric import KDMSEGammaTerm, KDMSEOrthoTerm, KDMSEVarRedTerm, KDOrthoTerm


def make_batch(batch_size=6, num_classes=4, seed=0, scale=2.0):
    generator = torch.Generator().manual_seed(seed)
    return DistillBatch(inputs=torch.zeros(batch_size), indices=torch.arange(batch_size),
                        targets=torch.randint(num_classes, (batch_size,), generator=generator),
                        student_logits=(scale * torch.randn(batch_size, num_classes, generator=generator)
                                        ).requires_grad_(True),
                        teacher_logits=scale * torch.randn(batch_size, num_classes, generator=generator))


def softmax(row, t=1.0):
    top = max(row)
    exps = [math.exp((a - top) / t) for a in row]
    return [e / sum(exps) for e in exps]


def rows(batch):
    """Per example: (z, v, y one-hot) as Python lists."""
    k = batch.student_logits.shape[1]
    return [(z, v, [1.0 if j == label else 0.0 for j in range(k)])
            for z, v, label in zip(batch.student_logits.tolist(), batch.teacher_logits.tolist(), batch.targets.tolist())]


def entries_mean(values):
    flat = [x for row in values for x in row]
    return sum(flat) / len(flat)


def assert_grad_reaches_student(term, batch):
    term(batch).backward()
    assert batch.student_logits.grad is not None and batch.student_logits.grad.abs().sum() > 0


@pytest.mark.parametrize("scale", ["logp", "p"])
def test_kd_mse(scale):
    batch = make_batch()
    expected = entries_mean([[(a - (b if scale == "logp" else pb)) ** 2 for a, b, pb in zip(z, v, softmax(v))]
                             for z, v, _ in rows(batch)])
    assert KDMSETerm(scale=scale)(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grad_reaches_student(KDMSETerm(scale=scale), make_batch())
    with pytest.raises(ConfigError, match="must be one of"):
        KDMSETerm(scale="log")


@pytest.mark.parametrize("temperature,eps,smoothing", [(4.0, 1e-2, 0.0), (1.0, 0.3, 0.0), (2.0, 1e-2, 0.1)])
def test_kd_ortho_formula(temperature, eps, smoothing):
    batch = make_batch(seed=1)
    total = 0.0
    for z, v, y in rows(batch):
        q, w = softmax(z, temperature), softmax(v, temperature)
        p = [(1 - smoothing) * a + smoothing / len(v) for a in softmax(v)]
        r = [yk / max(pk, eps) - 1 for yk, pk in zip(y, p)]
        kl = sum(wk * (math.log(wk) - math.log(qk)) for wk, qk in zip(w, q))
        rw = sum(rk * wk for rk, wk in zip(r, w))
        wlogq = sum(wk * math.log(qk) for wk, qk in zip(w, q))
        rwlogq = sum(rk * wk * math.log(qk) for rk, wk, qk in zip(r, w, q))
        total += kl + (rw * wlogq - rwlogq) / temperature
    expected = temperature ** 2 * total / len(batch.targets)
    term = KDOrthoTerm(temperature=temperature, eps=eps, smoothing=smoothing)
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grad_reaches_student(term, make_batch(seed=1))


def test_kd_ortho_correction_is_the_derivative_along_y_minus_p():
    """The correction equals <grad_p l(z; p), y - p> at p = softmax(v), where l is the tempered
    cross-entropy written in the teacher probabilities: w_k(p) = p_k^(1/T) / sum_j p_j^(1/T)."""
    temperature = 3.0
    batch = make_batch(seed=2, scale=1.0)
    z = batch.student_logits.detach().double()
    p = batch.teacher_logits.double().softmax(dim=1)
    y = torch.nn.functional.one_hot(batch.targets, p.shape[1]).double()
    log_q = (z / temperature).log_softmax(dim=1)

    def tempered_ce(probabilities):
        w = probabilities ** (1 / temperature)
        w = w / w.sum(dim=1, keepdim=True)
        return -(w * log_q).sum(dim=1)

    _, derivative = torch.autograd.functional.jvp(tempered_ce, p, y - p)
    term = KDOrthoTerm(temperature=temperature, eps=1e-12)
    with_correction = term(batch).item()
    without = temperature ** 2 * torch.nn.functional.kl_div(
        log_q, (batch.teacher_logits.double() / temperature).log_softmax(dim=1), reduction="batchmean",
        log_target=True).item()
    assert (with_correction - without) / temperature ** 2 == pytest.approx(derivative.mean().item(), rel=1e-5)


@pytest.mark.parametrize("eps", [1e-2, 0.2])
def test_kd_mse_ortho(eps):
    batch = make_batch(seed=3)
    expected = entries_mean([[(zk - (vk + yk / max(pk, eps) - 1)) ** 2 for zk, vk, yk, pk in zip(z, v, y, softmax(v))]
                             for z, v, y in rows(batch)])
    assert KDMSEOrthoTerm(eps=eps)(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grad_reaches_student(KDMSEOrthoTerm(eps=eps), make_batch(seed=3))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_kd_mse_varred(smoothing):
    batch = make_batch(seed=4, scale=1.0)
    expected = entries_mean([[pk * (zk - vk - yk / pk + 1) ** 2 for zk, vk, yk, pk in zip(
        z, v, y, [(1 - smoothing) * a + smoothing / len(v) for a in softmax(v)])] for z, v, y in rows(batch)])
    assert KDMSEVarRedTerm(smoothing=smoothing)(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grad_reaches_student(KDMSEVarRedTerm(smoothing=smoothing), make_batch(seed=4, scale=1.0))


def reference_gamma(kind, scale, p, y, c=1.0, lower=1e-3, alpha=0.5, relerr_c=2.0, tmax=2.0, abserr_c=0.05):
    if kind == "one":
        return 1.0
    if kind == "var":
        return 1 - p
    if kind == "bound_fast":
        return c / (max(p, lower) * (c + (y - p) ** 2)) if scale == "logp" else c / (c + (y - p) ** 2)
    low, high = {"minimax_relerr": (p / (1 + relerr_c), p * (1 + relerr_c)), "minimax_power": (p, p ** (1 / tmax)),
                 "minimax_abserr": (p - abserr_c, p + abserr_c)}[kind]
    # semiparametric-distillation kd.py bound_fn: the lower end floored (p scale 0; logp 1e-6, abserr 1e-3), the
    # upper end capped at 1
    floor = ({"minimax_abserr": 1e-3}.get(kind, 1e-6)) if scale == "logp" else 0.0
    low, high = max(low, floor), min(high, 1.0)
    points = [low + (high - low) * i / 9 for i in range(10)]
    best, best_worst = None, float("inf")
    for step in range(400):
        g = -10 + 0.05 * step
        worst = max((g * (t - p) - ((t - p) if scale == "p" else math.log(t) - math.log(p))) ** 2
                    + (1 / alpha - 1 + g) ** 2 * t * (1 - t) for t in points)
        if worst < best_worst - 1e-12:
            best, best_worst = g, worst
    return best


@pytest.mark.parametrize("scale", ["logp", "p"])
@pytest.mark.parametrize("kind", ["one", "var", "bound_fast", "minimax_relerr", "minimax_power", "minimax_abserr"])
def test_kd_mse_gamma(kind, scale):
    batch = make_batch(batch_size=3, num_classes=3, seed=5, scale=1.5)
    values = []
    for z, v, y in rows(batch):
        p = softmax(v)
        for zk, vk, yk, pk in zip(z, v, y, p):
            gamma = reference_gamma(kind, scale, pk, yk)
            target = (vk if scale == "logp" else pk) + gamma * (yk - pk)
            values.append((zk - target) ** 2)
    term = KDMSEGammaTerm(gamma=kind, scale=scale)
    assert term(batch).item() == pytest.approx(sum(values) / len(values), rel=1e-4)
    assert_grad_reaches_student(term, make_batch(batch_size=3, num_classes=3, seed=5, scale=1.5))


@pytest.mark.parametrize("kind", ["minimax_relerr", "minimax_power", "minimax_abserr"])
def test_minimax_gamma_uses_the_released_interval_ends_at_small_probabilities(kind):
    """Probabilities where the interval ends are clipped (below the abserr width, below the 1e-6 floor): each
    entry's gamma is the reference search over the released code's clipped interval."""
    p = torch.tensor([[1e-9, 1e-7, 5e-4, 0.02, 0.97998990]], dtype=torch.float64)
    y = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
    for scale in ("logp", "p"):
        term = KDMSEGammaTerm(gamma=kind, scale=scale)
        expected = [reference_gamma(kind, scale, float(pk), float(yk)) for pk, yk in zip(p[0], y[0])]
        assert term.gamma_of(p, y)[0].tolist() == pytest.approx(expected, abs=1e-9)
    assert KDMSEGammaTerm(gamma="minimax_abserr")._interval(p)[0][0, 2].item() == pytest.approx(1e-3)


def test_gamma_settings_are_checked():
    with pytest.raises(ConfigError, match="gamma must be one of"):
        KDMSEGammaTerm(gamma="two")
    with pytest.raises(ConfigError, match="alpha must lie in"):
        KDMSEGammaTerm(alpha=0)
    with pytest.raises(ConfigError, match="smoothing must lie in"):
        KDOrthoTerm(smoothing=1.5)


# ----------------------------------------------------------------------------------------------- DKD, DIST, Tf-KD, CKD
from losses.ckd import CKDTerm  # noqa: E402
from losses.dist import DISTTerm  # noqa: E402
from losses.dkd import DKDTerm  # noqa: E402
from losses.tfkd import TfKDRegTerm  # noqa: E402


def kl(p, q):
    return sum(a * (math.log(a) - math.log(b)) for a, b in zip(p, q) if a > 0)


@pytest.mark.parametrize("epoch,warmup,alpha,beta",
                         [(20, 20, 1.0, 8.0), (5, 20, 1.0, 2.0), (0, 0, 0.5, 1.0), (0, 20, 1.0, 8.0)])
def test_dkd_decomposition(epoch, warmup, alpha, beta):
    temperature = 4.0
    batch = make_batch(seed=6)
    batch.epoch = epoch
    total = 0.0
    for z, v, y in rows(batch):
        target = y.index(1.0)
        ps, pt = softmax(z, temperature), softmax(v, temperature)
        tckd = kl([pt[target], 1 - pt[target]], [ps[target], 1 - ps[target]])
        others = [k for k in range(len(z)) if k != target]
        nckd = kl(softmax([v[k] for k in others], temperature), softmax([z[k] for k in others], temperature))
        total += alpha * tckd + beta * nckd
    ramp = min((epoch + 1) / warmup, 1.0) if warmup else 1.0  # mdistiller counts epochs from 1, Lightning from 0
    expected = ramp * temperature ** 2 * total / len(batch.targets)
    term = DKDTerm(weight_tckd=alpha, weight_nckd=beta, temperature=temperature, warmup_epochs=warmup)
    assert term(batch).item() == pytest.approx(expected, rel=1e-4)
    assert_grad_reaches_student(term, make_batch(seed=6))
    with pytest.raises(ConfigError, match="mdistiller uses 1, 8, 20"):
        DKDTerm(weight_nckd=-1)


def pearson(a, b):
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    return cov / (math.sqrt(sum((x - ma) ** 2 for x in a)) * math.sqrt(sum((y - mb) ** 2 for y in b)))


@pytest.mark.parametrize("temperature,weight_inter,weight_intra", [(4.0, 1.0, 0.5), (1.0, 1.0, 1.0), (2.0, 0.0, 2.0)])
def test_dist_relations(temperature, weight_inter, weight_intra):
    batch = make_batch(seed=7)
    student = [softmax(z, temperature) for z, _, _ in rows(batch)]
    teacher = [softmax(v, temperature) for _, v, _ in rows(batch)]
    inter = sum(1 - pearson(s, t) for s, t in zip(student, teacher)) / len(student)
    columns = range(len(student[0]))
    intra = sum(1 - pearson([s[k] for s in student], [t[k] for t in teacher]) for k in columns) / len(columns)
    expected = temperature ** 2 * (weight_inter * inter + weight_intra * intra)
    term = DISTTerm(weight_inter=weight_inter, weight_intra=weight_intra, temperature=temperature)
    assert term(batch).item() == pytest.approx(expected, rel=1e-4)
    assert_grad_reaches_student(term, make_batch(seed=7))


@pytest.mark.parametrize("temperature,correct_prob,multiplier", [(20.0, 0.99, 100.0), (1.0, 0.9, 1.0), (40.0, 0.5, 10.0)])
def test_tfkd_reg_virtual_teacher(temperature, correct_prob, multiplier):
    batch = make_batch(seed=8)
    total = 0.0
    for z, _, y in rows(batch):
        virtual = [correct_prob if yk else (1 - correct_prob) / (len(z) - 1) for yk in y]
        total += kl(softmax(virtual, temperature), softmax(z))
    expected = multiplier * total / (len(batch.targets) * batch.student_logits.shape[1])
    term = TfKDRegTerm(temperature=temperature, correct_prob=correct_prob, multiplier=multiplier)
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grad_reaches_student(term, make_batch(seed=8))


def test_ckd_pairs():
    batch = make_batch(batch_size=4, seed=9)
    data = rows(batch)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]

    def mse(target_of):
        values = [((data[i][0][k] - data[j][0][k]) - (target_of(i)[k] - target_of(j)[k])) ** 2
                  for i, j in pairs for k in range(len(data[0][0]))]
        return sum(values) / len(values)

    expected = mse(lambda i: data[i][1]) + 0.5 * mse(lambda i: data[i][2])
    assert CKDTerm(weight_label=0.5, pairs="all")(batch).item() == pytest.approx(expected, rel=1e-5)
    term = CKDTerm(pairs="random", num_pairs=10, seed=3)
    first, second = term.pair_indices(5, step=7, device="cpu")
    again = term.pair_indices(5, step=7, device="cpu")
    assert (first != second).all() and torch.equal(first, again[0]) and len(first) == 10
    single = make_batch(batch_size=1)
    assert CKDTerm(pairs="all")(single).item() == 0.0
    assert_grad_reaches_student(term, make_batch(seed=9))


def test_pad_l2_adaptive_variance():
    from losses.pad import PADL2Term

    batch = make_batch(batch_size=3, num_classes=4, seed=10)
    batch.student_features = {"embedding": torch.randn(3, 5, generator=torch.Generator().manual_seed(1),
                                                       requires_grad=True)}
    term = PADL2Term(eps=1e-6)
    term.setup({"embedding": torch.Size([3, 5])}, {}, 4, 100)
    value = term(batch)
    log_variance = term.log_variance(batch.student_features["embedding"]).tolist()
    expected = sum((zk - vk) ** 2 / (1e-6 + math.exp(s)) + s
                   for (z, v, _), row in zip(rows(batch), log_variance) for zk, vk, s in zip(z, v, row)) / 12
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert term.log_variance.weight.grad.abs().sum() > 0 and batch.student_logits.grad.abs().sum() > 0


def embedding_batch(seed=12, batch_size=4, width=3):
    """A batch with student and teacher embeddings (B x width), the student's needing a gradient."""
    generator = torch.Generator().manual_seed(seed)
    batch = make_batch(batch_size=batch_size, seed=seed)
    batch.student_features = {"embedding": torch.randn(batch_size, width, generator=generator).requires_grad_(True)}
    batch.teacher_features = {"embedding": torch.randn(batch_size, width, generator=generator)}
    return batch


def test_feature_l2_is_torchdistills_mse_on_the_embeddings():
    from losses.pad import FeatureL2Term

    batch = embedding_batch()
    s, v = batch.student_features["embedding"].tolist(), batch.teacher_features["embedding"].tolist()
    expected = entries_mean([[(a - b) ** 2 for a, b in zip(srow, vrow)] for srow, vrow in zip(s, v)])
    term = FeatureL2Term(weight=15.0)
    term.setup({"embedding": torch.Size([4, 3])}, {"embedding": torch.Size([4, 3])}, 4, 100)
    value = term(batch)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    value.backward()
    assert batch.student_features["embedding"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="shapes differ"):
        term.setup({"embedding": torch.Size([4, 3])}, {"embedding": torch.Size([4, 5])}, 4, 100)


def test_pad_l2_on_the_embeddings_as_torchdistill():
    """PADL2Loss: mean over dimensions, then examples, of (t - s)^2 / (eps + exp(log s^2)) + log s^2, the log
    variance from VarianceBranch4PAD's Linear(d, d) + BatchNorm1d(d) on the student's embedding."""
    from losses.pad import PADL2Term

    batch = embedding_batch(seed=13)
    term = PADL2Term(eps=1e-6, tap="embedding")
    term.setup({"embedding": torch.Size([4, 3])}, {"embedding": torch.Size([4, 3])}, 4, 100)
    assert term.teacher_taps == ("embedding",) and isinstance(term.log_variance[1], torch.nn.BatchNorm1d)
    value = term(batch)
    linear = term.log_variance[0]
    s, v = batch.student_features["embedding"], batch.teacher_features["embedding"]
    projected = (s @ linear.weight.T + linear.bias).tolist()
    log_variance = []  # BatchNorm1d in training mode: per dimension, batch mean and biased variance, eps 1e-5
    for j in range(3):
        column = [row[j] for row in projected]
        mean = sum(column) / 4
        variance = sum((x - mean) ** 2 for x in column) / 4
        log_variance.append([(x - mean) / math.sqrt(variance + 1e-5) for x in column])
    expected = sum((b - a) ** 2 / (1e-6 + math.exp(log_variance[j][i])) + log_variance[j][i]
                   for i, (srow, vrow) in enumerate(zip(s.tolist(), v.tolist()))
                   for j, (a, b) in enumerate(zip(srow, vrow))) / 12
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s.grad.abs().sum() > 0 and linear.weight.grad.abs().sum() > 0


def test_kd_mse_varred_stays_finite_when_the_target_probability_underflows():
    batch = make_batch(seed=11)
    batch.teacher_logits = batch.teacher_logits.clone()
    batch.teacher_logits[torch.arange(6), batch.targets] = -200.0  # p_target underflows to 0 in fp32
    value = KDMSEVarRedTerm()(batch)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(batch.student_logits.grad).all()


@pytest.mark.parametrize("make_term,match", [
    (lambda: KDOrthoTerm(eps=-1e-3), "eps must lie in"),
    (lambda: KDMSEOrthoTerm(eps=2.0), "eps must lie in"),
    (lambda: KDMSEVarRedTerm(smoothing=-0.1), "smoothing must lie in"),
    (lambda: KDMSEGammaTerm(c=0), "c must be > 0"),
    (lambda: KDMSEGammaTerm(scale="log"), "scale must be one of"),
    (lambda: KDMSEGammaTerm(gamma="minimax_power", power_tmax=0.5), "power_tmax must be >= 1"),
    (lambda: KDMSEGammaTerm(abserr_c=-1), "abserr_c must be > 0"),
    (lambda: DKDTerm(warmup_epochs=-1), "warmup_epochs >= 0"),
    (lambda: DISTTerm(weight_inter=-1), "weight_inter >= 0"),
    (lambda: DISTTerm(weight_inter=0, weight_intra=0), "not both 0"),
    (lambda: TfKDRegTerm(correct_prob=1.5), "correct_prob must lie in"),
    (lambda: TfKDRegTerm(multiplier=0), "multiplier must be > 0"),
    (lambda: CKDTerm(pairs="some"), "must be one of"),
    (lambda: CKDTerm(pos_and_neg=1), "pos_and_neg must be an integer >= 2"),
    (lambda: CKDTerm(pairs="random", num_pairs=0), "num_pairs must be a positive integer"),
    (lambda: CKDTerm(weight_label=-1), "weight_label must be >= 0"),
])
def test_bad_hyperparameters_raise_config_error(make_term, match):
    with pytest.raises(ConfigError, match=match):
        make_term()


def test_gamma_target_is_detached_and_chunking_does_not_change_gamma():
    batch = make_batch(seed=12)
    batch.teacher_logits = batch.teacher_logits.clone().requires_grad_(True)
    for term in (KDMSEGammaTerm(gamma="minimax_relerr"), KDMSEGammaTerm(gamma="bound_fast", scale="p")):
        term(batch).backward()
        assert batch.teacher_logits.grad is None or batch.teacher_logits.grad.abs().sum() == 0
    # Large batches are searched in chunks of entries; the chunk size must not matter.
    p = batch.teacher_logits.detach().softmax(dim=1)
    term = KDMSEGammaTerm(gamma="minimax_abserr", scale="p")
    assert torch.equal(term._minimax(p, chunk=5), term._minimax(p))


# Every method whose terms read the logits of one view only (no declared feature taps, no extra views), from cfg/kd/.
LOGIT_CONFIGS = [name for name in METHODS if not reads_features(name) and not reads_views(name)]


@pytest.mark.parametrize("name", LOGIT_CONFIGS)
def test_logit_configs_instantiate_and_build_an_objective(name):
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from losses import DistillationObjective

    cfg = OmegaConf.load(Path(__file__).resolve().parents[1] / "cfg" / "kd" / f"{name}.yaml")
    assert cfg.name == name
    terms = {key: instantiate(node) for key, node in cfg.terms.items()}
    objective = DistillationObjective(terms)
    batch = make_batch(seed=13)
    batch.epoch = 25  # past any warm-up
    total, values = objective(batch)
    assert torch.isfinite(total) and set(values) == set(objective.main_weights)
    total.backward()
    assert batch.student_logits.grad.abs().sum() > 0


def test_kd_generated_rows_at_their_own_temperature():
    """gnosis DistillLoader + TeacherStudentFwdCrossEntLoss: each row's soft cross-entropy at its source's
    temperature times that temperature squared (real 4, GAN rows 1), averaged over all rows; KL differs from it by
    the teacher's entropy only."""
    from losses.kd import KDTerm
    batch = make_batch(batch_size=5, seed=13)
    batch.generated = torch.tensor([False, False, True, False, True])
    total = 0.0
    for (z, v, _), made in zip(rows(batch), batch.generated.tolist()):
        t = 1.0 if made else 4.0
        total += t * t * kl(softmax(v, t), softmax(z, t))
    term = KDTerm(temperature=4.0, generated_temperature=1.0)
    assert term(batch).item() == pytest.approx(total / 5, rel=1e-5)
    assert KDTerm(temperature=4.0)(batch).item() == pytest.approx(
        sum(16 * kl(softmax(v, 4.0), softmax(z, 4.0)) for z, v, _ in rows(batch)) / 5, rel=1e-5)
