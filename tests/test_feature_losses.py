"""Feature and relational terms against independent computations of their formulas (small tensors,
explicit loops), their gradients, and their trainable parts."""
import math

import pytest
import torch

from errors import ConfigError
from losses import DistillBatch
from losses.at import ATTerm
from losses.cc import CCTerm
from losses.feature_utils import Regressor
from losses.fitnet import FitNetTerm
from losses.nst import NSTTerm
from losses.pkt import PKTTerm
from losses.rkd import RKDTerm
from losses.sp import SPTerm
from losses.vid import VIDTerm


def features_batch(student, teacher, batch_size=4):
    return DistillBatch(inputs=torch.zeros(batch_size), targets=torch.zeros(batch_size, dtype=torch.long),
                        indices=torch.arange(batch_size), student_logits=torch.zeros(batch_size, 3),
                        teacher_logits=torch.zeros(batch_size, 3), student_features=student, teacher_features=teacher)


def random_maps(*shape, seed=0, grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(grad)


def l2_normalise(values):
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def test_attention_transfer():
    s = {"stage:-1": random_maps(2, 3, 4, 4, seed=1, grad=True)}
    t = {"stage:-1": random_maps(2, 5, 2, 2, seed=2)}  # smaller teacher map: the student's is pooled 2x2
    value = ATTerm(stages=[-1], p=2.0)(features_batch(s, t, 2))
    pooled = torch.nn.functional.avg_pool2d(s["stage:-1"].detach(), 2)
    total = 0.0
    for b in range(2):
        a_s = l2_normalise([sum(pooled[b, c, i, j].item() ** 2 for c in range(3)) / 3 for i in range(2) for j in range(2)])
        a_t = l2_normalise([sum(t["stage:-1"][b, c, i, j].item() ** 2 for c in range(5)) / 5
                            for i in range(2) for j in range(2)])
        total += sum((x - y) ** 2 for x, y in zip(a_s, a_t))
    assert value.item() == pytest.approx(total / 8, rel=1e-5)
    value.backward()
    assert s["stage:-1"].grad.abs().sum() > 0


def test_similarity_preserving():
    s = {"stage:-1": random_maps(3, 2, 2, 2, seed=3)}
    t = {"stage:-1": random_maps(3, 4, 1, 1, seed=4)}

    def gram(x):
        flat = x.flatten(1).tolist()
        rows = [[sum(a * b for a, b in zip(u, v)) for v in flat] for u in flat]
        return [l2_normalise(row) for row in rows]

    gs, gt = gram(s["stage:-1"]), gram(t["stage:-1"])
    expected = sum((gs[i][j] - gt[i][j]) ** 2 for i in range(3) for j in range(3)) / 9
    assert SPTerm(stage=-1)(features_batch(s, t, 3)).item() == pytest.approx(expected, rel=1e-5)


def test_rkd_distance_and_angle():
    s = {"embedding": random_maps(4, 3, seed=5)}
    t = {"embedding": random_maps(4, 5, seed=6)}

    def smooth_l1(a, b):
        return sum(0.5 * (x - y) ** 2 if abs(x - y) < 1 else abs(x - y) - 0.5 for x, y in zip(a, b)) / len(a)

    def distances(e):
        rows = e.tolist()
        d = [[math.dist(u, v) for v in rows] for u in rows]
        mean = sum(d[i][j] for i in range(4) for j in range(4) if i != j) / 12
        return [d[i][j] / mean for i in range(4) for j in range(4)]

    def angle_cosines(e):
        rows = e.tolist()
        out = []
        for j in range(4):
            for i in range(4):
                for k in range(4):
                    u = [a - b for a, b in zip(rows[i], rows[j])]
                    v = [a - b for a, b in zip(rows[k], rows[j])]
                    nu, nv = math.sqrt(sum(x * x for x in u)), math.sqrt(sum(x * x for x in v))
                    out.append(sum(a * b for a, b in zip(u, v)) / (nu * nv) if nu > 0 and nv > 0 else 0.0)
        return out

    expected = 25 * smooth_l1(distances(s["embedding"]), distances(t["embedding"])) + \
        50 * smooth_l1(angle_cosines(s["embedding"]), angle_cosines(t["embedding"]))
    assert RKDTerm()(features_batch(s, t)).item() == pytest.approx(expected, rel=1e-4)


def test_pkt():
    s = {"embedding": random_maps(4, 3, seed=7)}
    t = {"embedding": random_maps(4, 6, seed=8)}

    def probabilities(e):
        unit = [l2_normalise(r) for r in e.tolist()]
        sim = [[(sum(a * b for a, b in zip(u, v)) + 1) / 2 for v in unit] for u in unit]
        return [[x / sum(row) for x in row] for row in sim]

    ps, pt = probabilities(s["embedding"]), probabilities(t["embedding"])
    expected = sum(pt[i][j] * math.log((pt[i][j] + 1e-7) / (ps[i][j] + 1e-7)) for i in range(4) for j in range(4)) / 16
    assert PKTTerm()(features_batch(s, t)).item() == pytest.approx(expected, rel=1e-5)


def test_nst_polynomial_mmd():
    s = {"stage:-1": random_maps(2, 3, 2, 2, seed=9)}
    t = {"stage:-1": random_maps(2, 2, 2, 2, seed=10)}
    total = 0.0
    for b in range(2):
        fs = [l2_normalise(s["stage:-1"][b, c].flatten().tolist()) for c in range(3)]
        ft = [l2_normalise(t["stage:-1"][b, c].flatten().tolist()) for c in range(2)]

        def k(a, c):
            return sum(x * y for x, y in zip(a, c)) ** 2
        total += (sum(k(a, c) for a in ft for c in ft) / 4 + sum(k(a, c) for a in fs for c in fs) / 9
                  - 2 * sum(k(a, c) for a in fs for c in ft) / 6)
    assert NSTTerm(stages=[-1])(features_batch(s, t, 2)).item() == pytest.approx(total / 2, rel=1e-5)


def test_fitnet_regresses_with_its_own_regressor():
    s = {"stage:2": random_maps(2, 4, 8, 8, seed=11, grad=True)}
    t = {"stage:2": random_maps(2, 6, 4, 4, seed=12)}
    term = FitNetTerm(stage=2)
    term.setup({"stage:2": s["stage:2"].shape}, {"stage:2": t["stage:2"].shape}, 10, 100)
    value = term(features_batch(s, t, 2))
    mapped = term.regressor(s["stage:2"]).detach()
    expected = sum((a - b) ** 2 for a, b in zip(mapped.flatten().tolist(), t["stage:2"].flatten().tolist())) / mapped.numel()
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s["stage:2"].grad.abs().sum() > 0 and term.regressor.body[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="no regressor"):
        Regressor(torch.Size([2, 4, 2, 2]), torch.Size([2, 4, 7, 7]))


def test_vid_gaussian_likelihood():
    s = {"stage:-1": random_maps(2, 3, 2, 2, seed=13, grad=True)}
    t = {"stage:-1": random_maps(2, 4, 2, 2, seed=14)}
    term = VIDTerm(stages=[-1], init_pred_var=5.0)
    term.setup({"stage:-1": s["stage:-1"].shape}, {"stage:-1": t["stage:-1"].shape}, 10, 100)
    value = term(features_batch(s, t, 2))
    mean = term.regressors[0](s["stage:-1"]).detach()
    variance = [math.log1p(math.exp(v)) + 1e-5 for v in term.log_scales[0].tolist()]
    assert variance[0] == pytest.approx(5.0, rel=1e-5)
    terms = [0.5 * ((mean[b, c, i, j].item() - t["stage:-1"][b, c, i, j].item()) ** 2 / variance[c]
                    + math.log(variance[c])) for b in range(2) for c in range(4) for i in range(2) for j in range(2)]
    assert value.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    value.backward()
    assert term.log_scales[0].grad.abs().sum() > 0


def test_cc_taylor_kernel():
    torch.manual_seed(0)
    s = {"embedding": random_maps(3, 5, seed=15)}
    t = {"embedding": random_maps(3, 7, seed=16)}
    term = CCTerm(feat_dim=4, gamma=0.4, order=2)
    term.setup({"embedding": s["embedding"].shape}, {"embedding": t["embedding"].shape}, 10, 100)
    value = term(features_batch(s, t, 3))
    es = [l2_normalise(r) for r in term.embed_student(s["embedding"]).tolist()]
    et = [l2_normalise(r) for r in term.embed_teacher(t["embedding"]).tolist()]

    def kernel(a, b):
        dot = sum(x * y for x, y in zip(a, b))
        return sum(math.exp(-0.8) * 0.8 ** p / math.factorial(p) * dot ** p for p in range(3))

    expected = sum((kernel(es[i], es[j]) - kernel(et[i], et[j])) ** 2 for i in range(3) for j in range(3)) / 9
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_stage_lists_are_checked():
    with pytest.raises(ConfigError, match="at least one stage"):
        ATTerm(stages=[])


# ----------------------------------------------------------------------------------------------- AB, FSP, FT
from losses.ab import ABTerm  # noqa: E402
from losses.fsp import FSPTerm  # noqa: E402
from losses.ft import FTTerm  # noqa: E402


def test_activation_boundary_loss():
    taps = ["preact:-2", "preact:-1"]
    s = {taps[0]: random_maps(2, 3, 2, 2, seed=17, grad=True), taps[1]: random_maps(2, 3, 2, 2, seed=18)}
    t = {taps[0]: random_maps(2, 4, 2, 2, seed=19), taps[1]: random_maps(2, 5, 2, 2, seed=20)}
    term = ABTerm(stages=[-2, -1], margin=1.0)
    term.setup({k: v.shape for k, v in s.items()}, {k: v.shape for k, v in t.items()}, 10, 100)
    value = term(features_batch(s, t, 2))
    expected = 0.0
    for i, tap in enumerate(taps):
        source = term.connectors[i](s[tap]).detach().flatten().tolist()
        target = t[tap].flatten().tolist()
        loss = sum((x + 1) ** 2 if (x > -1 and y <= 0) else 0.0 for x, y in zip(source, target))
        loss += sum((x - 1) ** 2 if (x <= 1 and y > 0) else 0.0 for x, y in zip(source, target))
        expected += 2.0 ** (i - 1) * loss / 2 / 1000 * 3
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s[taps[0]].grad.abs().sum() > 0


def test_fsp_matrices():
    taps = ["stage:0", "stage:1"]
    s = {taps[0]: random_maps(2, 3, 4, 4, seed=21), taps[1]: random_maps(2, 2, 2, 2, seed=22)}
    t = {taps[0]: random_maps(2, 3, 4, 4, seed=23), taps[1]: random_maps(2, 2, 2, 2, seed=24)}
    term = FSPTerm(stages=[0, 1])
    term.setup({k: v.shape for k, v in s.items()}, {k: v.shape for k, v in t.items()}, 10, 100)

    def fsp(features):
        bottom = torch.nn.functional.avg_pool2d(features[taps[0]], 2)  # pooled to the top map's 2x2
        top = features[taps[1]]
        return [[[sum(top[b, i].flatten()[p].item() * bottom[b, j].flatten()[p].item() for p in range(4)) / 4
                  for j in range(3)] for i in range(2)] for b in range(2)]

    gs, gt = fsp(s), fsp(t)
    expected = sum((gs[b][i][j] - gt[b][i][j]) ** 2 for b in range(2) for i in range(2) for j in range(3)) / 12
    assert term(features_batch(s, t, 2)).item() == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ConfigError, match="equal student and teacher channel counts"):
        FSPTerm(stages=[0, 1]).setup({taps[0]: torch.Size([2, 3, 4, 4]), taps[1]: torch.Size([2, 2, 2, 2])},
                                     {taps[0]: torch.Size([2, 5, 4, 4]), taps[1]: torch.Size([2, 2, 2, 2])}, 10, 1)


def test_factor_transfer_stages():
    s = {"stage:-1": random_maps(2, 3, 4, 4, seed=25, grad=True)}
    t = {"stage:-1": random_maps(2, 4, 4, 4, seed=26)}
    term = FTTerm(stage=-1, rate=0.5, p=1)
    term.setup({"stage:-1": s["stage:-1"].shape}, {"stage:-1": t["stage:-1"].shape}, 10, 100)
    batch = features_batch(s, t, 2)
    batch.stage = "paraphraser"
    reconstruction = term(batch)
    rebuilt = term.decoder(term.encoder(t["stage:-1"])).detach()
    assert reconstruction.item() == pytest.approx(((rebuilt - t["stage:-1"]) ** 2).mean().item(), rel=1e-5)
    batch.stage = None
    value = term(batch)
    factor_s = term.translator(s["stage:-1"]).detach().flatten(1)
    factor_t = term.encoder(t["stage:-1"]).detach().flatten(1)
    expected = 0.0
    for a, b in zip(factor_s.tolist(), factor_t.tolist()):
        expected += sum(abs(x - y) for x, y in zip(l2_normalise(a), l2_normalise(b)))
    assert value.item() == pytest.approx(expected / factor_s.numel(), rel=1e-5)
    value.backward()
    assert all(p.grad is None for p in term.encoder.parameters()), "the paraphraser only learns in its stage"
    assert term.translator[0].weight.grad.abs().sum() > 0
