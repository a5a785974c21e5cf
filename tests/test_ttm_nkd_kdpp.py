"""TTM / WTTM, NKD / USKD and KD++ / DKD++ against hand computations of their anchors' formulas (plain loops over
entries), and their limiting cases."""
import math
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from losses import DistillationObjective, DistillBatch, KDTerm
from losses.dkd import DKDTerm
from losses.kdpp import AnchorRampDKDTerm, AnchorRampKDTerm, NormDirectionTerm
from losses.nkd import NKDTerm, USKDTerm
from losses.ttm import TTMTerm
from runs.class_means import teacher_class_means
from tests.test_logit_losses import assert_grad_reaches_student, make_batch, softmax

CFG_KD = Path(__file__).resolve().parents[1] / "cfg" / "kd"


def log_softmax(row, t=1.0):
    return [math.log(p) for p in softmax(row, t)]


def without(row, drop):
    return [x for k, x in enumerate(row) if k not in drop]


# ----------------------------------------------------------------------------------------------- TTM / WTTM
def ttm_by_hand(batch, gamma, weighted):
    total = 0.0
    for z, v in zip(batch.student_logits.tolist(), batch.teacher_logits.tolist()):
        powered = [p ** gamma for p in softmax(v)]
        power_sum = sum(powered)
        q = [x / power_sum for x in powered]
        kl = sum(qk * (math.log(qk) - lp) for qk, lp in zip(q, log_softmax(z)))
        total += (power_sum if weighted else 1.0) * kl
    return total / len(batch.targets)


@pytest.mark.parametrize("gamma", [0.1, 0.25, 1.0, 1.5])
@pytest.mark.parametrize("weighted", [False, True])
def test_ttm_and_wttm_formula(gamma, weighted):
    batch = make_batch(batch_size=5, num_classes=7, seed=3)
    term = TTMTerm(exponent=gamma, sample_weighted=weighted)
    assert term(batch).item() == pytest.approx(ttm_by_hand(batch, gamma, weighted), rel=1e-5)
    assert_grad_reaches_student(term, make_batch(seed=4))


def test_ttm_at_exponent_one_is_kd_at_temperature_one():
    batch = make_batch(batch_size=8, num_classes=10, seed=5)
    assert TTMTerm(exponent=1.0)(batch).item() == pytest.approx(KDTerm(temperature=1.0)(batch).item(), rel=1e-6)
    # ... and WTTM weighs every example by sum_k p_k = 1 there
    assert TTMTerm(exponent=1.0, sample_weighted=True)(batch).item() == pytest.approx(
        TTMTerm(exponent=1.0)(batch).item(), rel=1e-6)


def test_wttm_with_equal_weights_is_that_weight_times_ttm():
    """Teacher rows that permute one another have one power sum: WTTM is then that constant times TTM."""
    batch = make_batch(batch_size=6, num_classes=5, seed=6)
    row = torch.tensor([2.0, -1.0, 0.5, 3.0, 0.0])
    batch.teacher_logits = torch.stack([row[torch.randperm(5, generator=torch.Generator().manual_seed(i))]
                                        for i in range(6)])
    gamma = 0.3
    weight = float((row.softmax(0) ** gamma).sum())
    wttm, ttm = TTMTerm(exponent=gamma, sample_weighted=True)(batch), TTMTerm(exponent=gamma)(batch)
    assert wttm.item() == pytest.approx(weight * ttm.item(), rel=1e-6)


def test_ttm_survives_a_confident_teacher():
    """p_k^gamma is computed in log space: a teacher softmax that underflows to 0 still gives a finite loss."""
    batch = make_batch(batch_size=2, num_classes=4, seed=7)
    batch.teacher_logits = torch.tensor([[200.0, -200.0, 0.0, 1.0], [0.0, 0.0, 0.0, -300.0]])
    assert torch.isfinite(TTMTerm(exponent=0.1, sample_weighted=True)(batch))


# ----------------------------------------------------------------------------------------------- NKD
def nkd_by_hand(batch, temperature, gamma, labels):
    target_part, other_part = 0.0, 0.0
    for z, v, y in zip(batch.student_logits.tolist(), batch.teacher_logits.tolist(), labels):
        target_part += -softmax(v)[y] * log_softmax(z)[y]
        q = softmax(without(v, {y}), temperature)
        other_part += -sum(qk * lp for qk, lp in zip(q, log_softmax(without(z, {y}), temperature)))
    n = len(labels)
    return target_part / n + gamma * temperature ** 2 * other_part / n


@pytest.mark.parametrize("temperature,gamma", [(3.0, 3.5), (1.0, 1.5), (2.0, 0.0)])
def test_nkd_formula(temperature, gamma):
    batch = make_batch(batch_size=6, num_classes=5, seed=8)
    expected = nkd_by_hand(batch, temperature, gamma, batch.targets.tolist())
    assert NKDTerm(temperature=temperature, weight_non_target=gamma)(batch).item() == pytest.approx(expected, rel=1e-5)
    assert_grad_reaches_student(NKDTerm(), make_batch(seed=9))


def test_nkd_under_mixing_reads_the_top_class_of_the_mixed_label():
    batch = make_batch(batch_size=4, num_classes=5, seed=10)
    mixed = torch.tensor([[0.7, 0.3, 0, 0, 0], [0, 0.2, 0.8, 0, 0], [0, 0, 0, 0.4, 0.6], [1.0, 0, 0, 0, 0]])
    batch.soft_targets = mixed
    expected = nkd_by_hand(batch, 3.0, 3.5, [0, 2, 4, 0])
    assert NKDTerm()(batch).item() == pytest.approx(expected, rel=1e-5)


def test_nkd_with_a_matching_teacher_at_temperature_one():
    """Student = teacher, gamma 1, T 1: the non-target part is the entropy of the non-target distribution and the
    target part -p_y log p_y, both derived by hand from one softmax."""
    batch = make_batch(batch_size=3, num_classes=4, seed=11)
    batch.teacher_logits = batch.student_logits.detach().clone()
    expected = 0.0
    for z, y in zip(batch.teacher_logits.tolist(), batch.targets.tolist()):
        p = softmax(z)
        others = [p[k] / (1 - p[y]) for k in range(len(z)) if k != y]
        expected += -p[y] * math.log(p[y]) - sum(o * math.log(o) for o in others)
    assert NKDTerm(temperature=1.0, weight_non_target=1.0)(batch).item() == pytest.approx(expected / 3, rel=1e-5)


# ----------------------------------------------------------------------------------------------- USKD
def uskd_by_hand(term, batch, labels, values, by_probabilities=False):
    """USKD's loss per uskd.py, with lists: labels / values per row (the top-1 or top-2 of the label)."""
    logits = batch.student_logits.tolist()
    feature = batch.student_features[term.tap]
    pooled = feature.flatten(2).mean(2).tolist() if feature.dim() > 2 else feature.tolist()
    weight, bias = term.weak_classifier.weight.tolist(), term.weak_classifier.bias.tolist()
    k_classes, n = len(logits[0]), len(logits)
    hard = batch.soft_targets.tolist() if batch.soft_targets is not None else None
    squared = [[softmax(z)[y] ** 2 for y in ys] for z, ys in zip(logits, labels)]
    columns = len(labels[0])
    means = [sum(row[c] for row in squared) / n for c in range(columns)]
    target = weak = other = 0.0
    for i, (z, ys, vs) in enumerate(zip(logits, labels, values)):
        p, lp = softmax(z), log_softmax(z)
        for c, (y, value) in enumerate(zip(ys, vs)):
            soft = 0.0 if value == 0 else squared[i][c] + value - means[c]
            target += -soft * lp[y]
        w_logits = [sum(a * b for a, b in zip(weight[k], pooled[i])) + bias[k] for k in range(k_classes)]
        w, lw = softmax(w_logits), log_softmax(w_logits)
        label_row = hard[i] if hard is not None else [1.0 if k == ys[0] else 0.0 for k in range(k_classes)]
        weak += -sum(term.weight_weak * (0.9 * label_row[k] + 0.1 / k_classes) * lw[k] for k in range(k_classes))
        mine = p if by_probabilities else lp
        w_t, m_t = sum(w[y] for y in ys), sum(mine[y] for y in ys)
        score = [w[k] / (1 - w_t + 1e-6) + mine[k] / (1 - m_t + 1e-6) for k in range(k_classes)]
        ranked = sorted(range(k_classes), key=lambda k: -score[k])
        zipf = {k: 1.0 / (ranked.index(k) + 1) for k in range(k_classes)}
        kept = [k for k in range(k_classes) if k not in ys]
        total = sum(zipf[k] for k in kept)
        other += -sum(zipf[k] / total * lq for k, lq in zip(kept, log_softmax([z[k] for k in kept])))
    return (term.weight_target * target + term.weight_non_target * other + weak) / n


def uskd_batch(seed, soft=None):
    batch = make_batch(batch_size=5, num_classes=6, seed=seed)
    batch.student_features = {"stage:-2": torch.randn(5, 3, 2, 2, generator=torch.Generator().manual_seed(seed))}
    batch.soft_targets = soft
    batch.teacher_logits = torch.full_like(batch.teacher_logits, float("nan"))  # teacher-free: never read
    return batch


def uskd_term(**options):
    term = USKDTerm(weight_target=0.7, weight_non_target=0.4, weight_weak=0.2, **options)
    term.setup({"stage:-2": torch.Size([5, 3, 2, 2])}, {}, num_classes=6, num_train=10)
    return term


@pytest.mark.parametrize("by_probabilities", [False, True])
def test_uskd_formula(by_probabilities):
    batch, term = uskd_batch(12), uskd_term(rank_with_probabilities=by_probabilities)
    labels = [[y] for y in batch.targets.tolist()]
    expected = uskd_by_hand(term, batch, labels, [[1.0]] * 5, by_probabilities)
    value = term(batch)
    assert torch.isfinite(value) and value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert batch.student_logits.grad.abs().sum() > 0 and term.weak_classifier.weight.grad.abs().sum() > 0


def test_uskd_under_mixing_reads_the_top_two_classes():
    soft = torch.tensor([[0.6, 0.4, 0, 0, 0, 0], [0, 0, 0.9, 0.1, 0, 0], [0, 0, 0, 0, 0.3, 0.7],
                         [0.5, 0, 0, 0, 0, 0.5], [0, 0.8, 0, 0, 0.2, 0]])
    batch, term = uskd_batch(13, soft), uskd_term()
    top = torch.sort(soft, dim=1, descending=True)
    expected = uskd_by_hand(term, batch, top.indices[:, :2].tolist(), top.values[:, :2].tolist())
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)


# ----------------------------------------------------------------------------------------------- KD++ / DKD++
def nd_by_hand(student, teacher, centres, labels):
    total = 0.0
    for s, t, y in zip(student.tolist(), teacher.tolist(), labels):
        c = centres[y].tolist()
        c_norm = math.sqrt(sum(x * x for x in c))
        s_norm, t_norm = math.sqrt(sum(x * x for x in s)), math.sqrt(sum(x * x for x in t))
        total += 1 - sum(a * b / c_norm for a, b in zip(s, c)) / max(s_norm, t_norm)
    return total / len(labels)


def nd_batch(seed, student_width, teacher_width, classes=4, batch_size=6):
    generator = torch.Generator().manual_seed(seed)
    batch = make_batch(batch_size=batch_size, num_classes=classes, seed=seed)
    batch.student_features = {"embedding": torch.randn(batch_size, student_width, generator=generator
                                                       ).requires_grad_(True)}
    batch.teacher_features = {"embedding": 3 * torch.randn(batch_size, teacher_width, generator=generator)}
    return batch


def nd_term(centres, student_width, teacher_width):
    term = NormDirectionTerm()
    term.bind_teacher_class_means(centres)
    term.setup({"embedding": torch.Size([2, student_width])}, {"embedding": torch.Size([2, teacher_width])},
               num_classes=len(centres), num_train=10)
    return term


def test_norm_direction_formula():
    centres = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    batch, term = nd_batch(14, 5, 5), nd_term(centres, 5, 5)
    assert term.projector is None
    expected = nd_by_hand(batch.student_features["embedding"].detach(), batch.teacher_features["embedding"], centres,
                          batch.targets.tolist())
    value = term(batch)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert batch.student_features["embedding"].grad.abs().sum() > 0


def test_norm_direction_maps_a_narrower_student_to_the_teacher_width():
    """The anchor's EmbTrans: BatchNorm1d -> Dropout(0.5) -> Linear(student, teacher), zero biases; the ND
    formula then reads the mapped embedding."""
    centres = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    batch, term = nd_batch(15, 3, 6), nd_term(centres, 3, 6)
    norm, dropout, linear = term.projector
    assert isinstance(norm, nn.BatchNorm1d) and dropout.p == 0.5 and linear.weight.shape == (6, 3)
    assert linear.bias.abs().sum() == 0
    term.eval()  # dropout off, BatchNorm at its running statistics (mean 0, variance 1)
    student = batch.student_features["embedding"].detach()
    mapped = [[sum(w * x / math.sqrt(1 + norm.eps) for w, x in zip(row, s)) for row in linear.weight.tolist()]
              for s in student.tolist()]
    expected = nd_by_hand(torch.tensor(mapped), batch.teacher_features["embedding"], centres, batch.targets.tolist())
    assert term(batch).item() == pytest.approx(expected, rel=1e-5)


def test_norm_direction_classifier_centres_are_the_teacher_classifier_rows():
    teacher = nn.Sequential()
    teacher.add_module("body", nn.Linear(3, 5))
    teacher.add_module("fc", nn.Linear(5, 4))
    teacher.classifier_name = "fc"
    term = NormDirectionTerm(centres="classifier")
    assert term.teacher_class_means is None  # no pass over the data
    term.bind_teacher(teacher, torch.zeros(2, 3))
    term.setup({"embedding": torch.Size([2, 5])}, {"embedding": torch.Size([2, 5])}, num_classes=4, num_train=1)
    rows = teacher.fc.weight.detach()
    assert torch.allclose(term.class_directions, rows / rows.norm(dim=1, keepdim=True))


def test_teacher_class_means_are_per_class_averages_over_the_data():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    model.classifier_name = "2"
    x = torch.randn(9, 3, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 2, 2, 0, 0, 2, 0, 2, 2])  # class 1 never appears
    batches = [(x[i:i + 4], y[i:i + 4], torch.arange(i, min(i + 4, 9))) for i in range(0, 9, 4)]
    means = teacher_class_means(model, batches, "embedding", 3)
    embedding = model[1](model[0](x)).detach()
    for k in range(3):
        members = [embedding[i] for i in range(9) if int(y[i]) == k]
        expected = torch.stack(members).mean(0) if members else torch.zeros(4)
        assert torch.allclose(means[k], expected, atol=1e-6)


def test_anchor_ramp_starts_at_zero_in_the_first_epoch():
    batch = make_batch(seed=16)
    kd = KDTerm(temperature=4.0)(batch).item()
    dkd = DKDTerm(weight_tckd=0.5, weight_nckd=8.0, warmup_epochs=0)(batch).item()
    for epoch, ramp in [(0, 0.0), (5, 0.25), (19, 0.95), (20, 1.0), (100, 1.0)]:
        batch.epoch = epoch
        assert AnchorRampKDTerm(warmup_epochs=20)(batch).item() == pytest.approx(ramp * kd, rel=1e-6, abs=1e-12)
        ramped = AnchorRampDKDTerm(weight_tckd=0.5, weight_nckd=8.0, warmup_epochs=20)(batch).item()
        assert ramped == pytest.approx(ramp * dkd, rel=1e-6, abs=1e-12)


# ----------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("name", ["ttm", "wttm", "nkd"])
def test_logit_configs_build_an_objective(name):
    cfg = OmegaConf.load(CFG_KD / f"{name}.yaml")
    assert cfg.name == name
    objective = DistillationObjective({key: instantiate(node) for key, node in cfg.terms.items()})
    total, values = objective(make_batch(seed=17))
    assert torch.isfinite(total) and set(values) == set(objective.main_weights)


@pytest.mark.parametrize("key,value", [("kd.terms.ttm.exponent", "0"), ("kd.terms.ttm.sample_weighted", "maybe")])
def test_bad_ttm_options_are_refused_before_training(key, value):
    from errors import ConfigError
    from runs.validation import check_values
    from tests.helpers import compose_config

    cfg = compose_config("distill", ["kd=ttm", f"{key}={value}"])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_values(cfg)


# ----------------------------------------------------------------------------------------------- cells
def test_every_published_number_has_a_cell():
    from scripts import experiments
    from scripts.experiments import clskd, kdpp, ttm

    assert len(experiments.names("ttm")) == sum(len(row) for row in ttm.TTM_RESULTS.values()) == 26
    assert len(experiments.names("kdpp")) == 2 * len(kdpp.ND_RESULTS) == 12
    assert set(kdpp.ND_KDPP) == set(kdpp.ND_DKDPP) == set(kdpp.ND_RESULTS)
    assert experiments.names("clskd") == sorted(f"clskd/nkd_{t}_{s}" for t, s in clskd.NKD_IMAGENET)


def test_kdpp_cells_run_the_anchors_recipe():
    from tests.helpers import compose_config

    cfg = compose_config("distill", ["experiment=kdpp/dkdpp_resnet32x4_shufflenetv1"])
    assert (cfg.data.batch_size, cfg.optimizer.lr, cfg.optimizer.nesterov, cfg.trainer.max_epochs) == (128, 0.02, True, 240)
    dkd, nd = cfg.kd.terms.dkd, cfg.kd.terms.nd
    assert (dkd.weight_tckd, dkd.weight_nckd, nd.weight, cfg.published.value) == (0.5, 8.0, 4.0, 77.11)
    kd = compose_config("distill", ["experiment=kdpp/kdpp_resnet32x4_resnet8x4"])
    assert (kd.optimizer.lr, kd.kd.terms.kd.weight, kd.kd.terms.nd.weight, kd.published.value) == (0.1, 3.5, 2.0, 75.54)
    wttm = compose_config("distill", ["experiment=ttm/wttm_vgg13_mobilenetv2"])
    assert wttm.kd.terms.ttm.sample_weighted and wttm.optimizer.lr == 0.01 and wttm.published.value == 69.16
