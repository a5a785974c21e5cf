"""Feature and relational terms against independent computations of their formulas (small tensors,
explicit loops), their gradients, and their trainable parts; then each on real architectures' features."""
import math
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

import models
from errors import ConfigError
from losses import DistillBatch
from losses.at import ATTerm
from losses.stagewise import StagewiseTerm
from losses.cc import CCTerm
from losses.feature_utils import Regressor
from losses.fitnet import FitNetTerm
from losses.kdsvd import KDSVDTerm
from losses.nst import NSTTerm
from losses.pkt import PKTTerm
from losses.reviewkd import ReviewKDTerm
from losses.rkd import RKDTerm
from losses.sp import SPTerm
from losses.vid import VIDTerm
from models.features import FeatureTaps

CFG_KD = Path(__file__).resolve().parents[1] / "cfg" / "kd"


def features_batch(student, teacher, batch_size=4):
    return DistillBatch(inputs=torch.zeros(batch_size), targets=torch.zeros(batch_size, dtype=torch.long),
                        indices=torch.arange(batch_size), student_logits=torch.zeros(batch_size, 3),
                        teacher_logits=torch.zeros(batch_size, 3), student_features=student, teacher_features=teacher)


def random_maps(*shape, seed=0, grad=False):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).requires_grad_(grad)


def l2_normalise(values):
    norm = math.sqrt(sum(v * v for v in values))
    return [v / norm for v in values]


def dot(a, b):
    return sum(x * y for x, y in zip(a, b))


def shapes(features):
    return {tap: feature.shape for tap, feature in features.items()}


@pytest.mark.parametrize("p", [2.0, 1.0])
def test_attention_transfer(p):
    s = {"stage:-1": random_maps(2, 3, 4, 4, seed=1, grad=True)}
    t = {"stage:-1": random_maps(2, 5, 2, 2, seed=2)}  # smaller teacher map: the student's is pooled 2x2
    value = ATTerm(stages=[-1], p=p)(features_batch(s, t, 2))
    pooled = torch.nn.functional.avg_pool2d(s["stage:-1"].detach(), 2)
    total = 0.0
    for b in range(2):
        a_s = l2_normalise([sum(abs(pooled[b, c, i, j].item()) ** p for c in range(3)) / 3
                            for i in range(2) for j in range(2)])
        a_t = l2_normalise([sum(abs(t["stage:-1"][b, c, i, j].item()) ** p for c in range(5)) / 5
                            for i in range(2) for j in range(2)])
        total += sum((x - y) ** 2 for x, y in zip(a_s, a_t))
    assert value.item() == pytest.approx(total / 8, rel=1e-5)
    value.backward()
    assert s["stage:-1"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="p must be > 0"):
        ATTerm(p=0)


def test_similarity_preserving():
    s = {"stage:-1": random_maps(3, 2, 2, 2, seed=3, grad=True)}
    t = {"stage:-1": random_maps(3, 4, 1, 1, seed=4)}

    def gram(x):
        flat = x.detach().flatten(1).tolist()
        return [l2_normalise([dot(u, v) for v in flat]) for u in flat]  # rows of G normalised, not of F

    gs, gt = gram(s["stage:-1"]), gram(t["stage:-1"])
    expected = sum((gs[i][j] - gt[i][j]) ** 2 for i in range(3) for j in range(3)) / 9
    value = SPTerm(stage=-1)(features_batch(s, t, 3))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s["stage:-1"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="one stage index"):
        SPTerm(stage=[1, 2])


def test_rkd_distance_and_angle():
    s = {"embedding": random_maps(4, 3, seed=5, grad=True)}
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
                    nu, nv = math.sqrt(dot(u, u)), math.sqrt(dot(v, v))
                    out.append(dot(u, v) / (nu * nv) if nu > 0 and nv > 0 else 0.0)
        return out

    student = s["embedding"].detach()
    expected = 25 * smooth_l1(distances(student), distances(t["embedding"])) + \
        50 * smooth_l1(angle_cosines(student), angle_cosines(t["embedding"]))
    value = RKDTerm()(features_batch(s, t))
    assert value.item() == pytest.approx(expected, rel=1e-4)
    value.backward()
    assert torch.isfinite(s["embedding"].grad).all() and s["embedding"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="weight_distance"):
        RKDTerm(weight_distance=-1.0)


def test_pkt():
    s = {"embedding": random_maps(4, 3, seed=7, grad=True)}
    t = {"embedding": random_maps(4, 6, seed=8)}

    def probabilities(e):
        unit = [l2_normalise(r) for r in e.tolist()]
        sim = [[(dot(u, v) + 1) / 2 for v in unit] for u in unit]
        return [[x / sum(row) for x in row] for row in sim]

    ps, pt = probabilities(s["embedding"].detach()), probabilities(t["embedding"])
    expected = sum(pt[i][j] * math.log((pt[i][j] + 1e-7) / (ps[i][j] + 1e-7)) for i in range(4) for j in range(4)) / 16
    value = PKTTerm()(features_batch(s, t))
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s["embedding"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="eps"):
        PKTTerm(eps=0)


def test_nst_polynomial_mmd():
    s = {"stage:-1": random_maps(2, 3, 2, 2, seed=9, grad=True)}
    t = {"stage:-1": random_maps(2, 2, 2, 2, seed=10)}
    total = 0.0
    for b in range(2):
        fs = [l2_normalise(s["stage:-1"][b, c].detach().flatten().tolist()) for c in range(3)]
        ft = [l2_normalise(t["stage:-1"][b, c].flatten().tolist()) for c in range(2)]

        def k(a, c):
            return dot(a, c) ** 2
        total += (sum(k(a, c) for a in ft for c in ft) / 4 + sum(k(a, c) for a in fs for c in fs) / 9
                  - 2 * sum(k(a, c) for a in fs for c in ft) / 6)
    value = NSTTerm(stages=[-1])(features_batch(s, t, 2))
    assert value.item() == pytest.approx(total / 2, rel=1e-5)
    value.backward()
    assert s["stage:-1"].grad.abs().sum() > 0


def test_fitnet_regresses_with_its_own_regressor():
    s = {"stage:2": random_maps(2, 4, 8, 8, seed=11, grad=True)}
    t = {"stage:2": random_maps(2, 6, 4, 4, seed=12)}
    term = FitNetTerm(stage=2)
    term.setup(shapes(s), shapes(t), 10, 100)
    value = term(features_batch(s, t, 2))
    mapped = term.regressor(s["stage:2"]).detach()
    expected = sum((a - b) ** 2 for a, b in zip(mapped.flatten().tolist(), t["stage:2"].flatten().tolist())) / mapped.numel()
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s["stage:2"].grad.abs().sum() > 0 and term.regressor.body[0].weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="no regressor"):
        Regressor(torch.Size([2, 4, 2, 2]), torch.Size([2, 4, 7, 7]))
    with pytest.raises(ConfigError, match="one stage index"):
        FitNetTerm(stage="2x")


def test_vid_gaussian_likelihood():
    s = {"stage:-1": random_maps(2, 3, 2, 2, seed=13, grad=True)}
    t = {"stage:-1": random_maps(2, 4, 2, 2, seed=14)}
    term = VIDTerm(stages=[-1], init_pred_var=5.0)
    term.setup(shapes(s), shapes(t), 10, 100)
    value = term(features_batch(s, t, 2))
    mean = term.regressors[0](s["stage:-1"]).detach()
    variance = [math.log1p(math.exp(v)) + 1e-5 for v in term.log_scales[0].tolist()]
    assert variance[0] == pytest.approx(5.0, rel=1e-5)
    terms = [0.5 * ((mean[b, c, i, j].item() - t["stage:-1"][b, c, i, j].item()) ** 2 / variance[c]
                    + math.log(variance[c])) for b in range(2) for c in range(4) for i in range(2) for j in range(2)]
    assert value.item() == pytest.approx(sum(terms) / len(terms), rel=1e-5)
    value.backward()
    assert term.log_scales[0].grad.abs().sum() > 0 and s["stage:-1"].grad.abs().sum() > 0
    assert term.regressors[0][0].weight.grad.abs().sum() > 0
    convs = [m for m in term.regressors[0] if isinstance(m, torch.nn.Conv2d)]  # RepDistiller VID.py conv1x1
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.bias) for c in convs] == \
        [(3, 4, (1, 1), None), (4, 4, (1, 1), None), (4, 4, (1, 1), None)]
    with pytest.raises(ConfigError, match="init_pred_var"):
        VIDTerm(init_pred_var=0.0)


def cc_setup(**kwargs):
    s = {"embedding": random_maps(3, 5, seed=15, grad=True)}
    t = {"embedding": random_maps(3, 7, seed=16)}
    term = CCTerm(feat_dim=4, **kwargs)
    term.setup(shapes(s), shapes(t), 10, 100)
    es = term.embed_student(s["embedding"]).detach()
    et = term.embed_teacher(t["embedding"]).detach()
    return s, t, term, es, et


def test_cc_repdistiller_consecutive_pairs():
    s, t, term, es, et = cc_setup()
    value = term(features_batch(s, t, 3))
    delta = [[abs(a - b) for a, b in zip(u, v)] for u, v in zip(es.tolist(), et.tolist())]
    expected = sum(dot(delta[i], delta[i + 1]) for i in range(2)) / 2
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s["embedding"].grad.abs().sum() > 0
    assert term.embed_student.weight.grad.abs().sum() > 0 and term.embed_teacher.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel", ["bilinear", "gaussian"])
def test_cc_matrix_form(kernel):
    s, t, term, es, et = cc_setup(form="matrix", kernel=kernel, gamma=0.4, order=2, normalize=True)
    value = term(features_batch(s, t, 3))
    es, et = [l2_normalise(r) for r in es.tolist()], [l2_normalise(r) for r in et.tolist()]

    def k(a, b):
        if kernel == "bilinear":
            return dot(a, b)
        return sum(math.exp(-0.8) * 0.8 ** p / math.factorial(p) * dot(a, b) ** p for p in range(3))

    expected = sum((k(es[i], es[j]) - k(et[i], et[j])) ** 2 for i in range(3) for j in range(3)) / 9
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert term.embed_student.weight.grad.abs().sum() > 0


def test_cc_refuses_bad_arguments():
    for bad in ({"form": "pairs"}, {"kernel": "rbf"}, {"feat_dim": 0}, {"gamma": -1.0}):
        with pytest.raises(ConfigError, match="kd.terms.cc"):
            CCTerm(**bad)


def reference_right_singular(x, count):
    """Right singular vectors of each sample's (positions x channels) matrix from the eigenvectors of X^T X,
    top `count` by eigenvalue (= squared singular value); returned with the singular values."""
    out = []
    for sample in x:
        rows = sample.flatten(1).t().double()
        eigenvalues, eigenvectors = torch.linalg.eigh(rows.t() @ rows)
        order = eigenvalues.argsort(descending=True)[:min(count, rows.shape[0], rows.shape[1])]
        out.append(([eigenvectors[:, i].tolist() for i in order], [eigenvalues[i].clamp_min(0).sqrt().item()
                                                                   for i in order]))
    return out


@pytest.mark.parametrize("k", [1, 2])
def test_kdsvd_matches_svd_relations(k):
    taps = ["stage:1", "stage:2"]
    s = {taps[0]: random_maps(2, 3, 2, 3, seed=31, grad=True), taps[1]: random_maps(2, 4, 3, 3, seed=32, grad=True)}
    t = {taps[0]: random_maps(2, 3, 2, 3, seed=33), taps[1]: random_maps(2, 4, 3, 3, seed=34)}
    term = KDSVDTerm(stages=[1, 2], k=k)
    term.setup(shapes(s), shapes(t), 10, 100)
    value = term(features_batch(s, t, 2))

    expected = 0.0
    previous = None
    for tap in taps:
        teacher = reference_right_singular(t[tap], k)
        student = reference_right_singular(s[tap].detach(), k + 3)
        # singular vectors have no intrinsic sign; take the teacher's from the SVD the term uses
        svd_v = torch.linalg.svd(t[tap].flatten(2).transpose(1, 2), full_matrices=False)[2].transpose(1, 2)
        current = []
        for b in range(2):
            t_vectors, t_values = teacher[b]
            t_vectors = [v if dot(v, svd_v[b, :, j].tolist()) > 0 else [-x for x in v] for j, v in enumerate(t_vectors)]
            scale = l2_normalise(t_values)
            s_vectors = student[b][0]
            t_scaled, s_scaled = [], []
            for j, tv in enumerate(t_vectors):
                cosines = [dot(sv, tv) for sv in s_vectors]
                best = max(range(len(cosines)), key=lambda i: abs(cosines[i]))
                sign = 1.0 if cosines[best] > 0 else -1.0
                s_scaled.append([sign * x * scale[j] for x in s_vectors[best]])
                t_scaled.append([x * scale[j] for x in tv])
            current.append((s_scaled, t_scaled))
        if previous is not None:
            for b in range(2):
                for j in range(k):
                    (s_b, t_b), (s_a, t_a) = current[b], previous[b]
                    for c in range(len(s_b[j])):
                        for c2 in range(len(s_a[j])):
                            r_s = math.exp(-(s_b[j][c] - s_a[j][c2]) ** 2 / 8)
                            r_t = math.exp(-(t_b[j][c] - t_a[j][c2]) ** 2 / 8)
                            expected += (r_s - r_t) ** 2 / 2
        previous = current
    assert value.item() == pytest.approx(expected, rel=1e-4, abs=1e-9)
    value.backward()
    assert s[taps[1]].grad.abs().sum() > 0 and torch.isfinite(s[taps[1]].grad).all()


def test_kdsvd_refuses_bad_arguments():
    with pytest.raises(ConfigError, match="integer >= 1"):
        KDSVDTerm(k=0)
    with pytest.raises(ConfigError, match="at least 2"):
        KDSVDTerm(stages=[3])
    term = KDSVDTerm(stages=[1, 2])
    with pytest.raises(ConfigError, match="equal student and teacher channel counts"):
        term.setup({"stage:1": torch.Size([2, 3, 4, 4]), "stage:2": torch.Size([2, 4, 2, 2])},
                   {"stage:1": torch.Size([2, 3, 4, 4]), "stage:2": torch.Size([2, 8, 2, 2])}, 10, 1)


def test_stage_lists_are_checked_and_null_means_all_but_the_stem():
    with pytest.raises(ConfigError, match="at least one stage"):
        ATTerm(stages=[])
    with pytest.raises(ConfigError, match="list of stage indices"):
        NSTTerm(stages=["a"])
    term = VIDTerm()  # stages null: unknown until the models are
    with pytest.raises(ConfigError, match="bind_models"):
        term.setup({}, {}, 10, 1)
    term.bind_models(models.build_model("resnet8x4", 10), models.build_model("resnet32x4", 10))
    assert term.student_taps == term.teacher_taps == ("stage:-3", "stage:-2", "stage:-1")  # stages 1, 2, 3 of 4
    term = ATTerm()
    term.bind_models(models.build_model("mobilenetv2", 10), models.build_model("vgg13", 10))
    assert term.student_taps == ("stage:-4", "stage:-3", "stage:-2", "stage:-1")  # stages 1..4 of 5
    term = NSTTerm()  # 4 vs 5 stages: the deepest 3 of each
    term.bind_models(models.build_model("resnet8x4", 10), models.build_model("vgg13", 10))
    assert term.student_taps == ("stage:-3", "stage:-2", "stage:-1")
    explicit = ATTerm(stages=[2])
    explicit.bind_models(models.build_model("resnet8x4", 10), models.build_model("vgg13", 10))
    assert explicit.student_taps == ("stage:2",)


# ------------------------------------------------------------------- the terms on real architectures
METHODS = {"fitnet": FitNetTerm, "at": ATTerm, "sp": SPTerm, "cc": CCTerm, "vid": VIDTerm, "rkd": RKDTerm,
           "pkt": PKTTerm, "nst": NSTTerm, "kdsvd": KDSVDTerm, "reviewkd": ReviewKDTerm}
SAME_FAMILY = ("resnet32x4", "resnet8x4")
CROSS = {"fitnet": ("resnet32x4", "shufflenetv2"),   # a student map half the teacher's: transposed conv
         "kdsvd": ("resnet56", "resnet20")}          # KD-SVD needs equal channel counts
_MODELS = {}


def model(name):
    if name not in _MODELS:
        torch.manual_seed(0)
        _MODELS[name] = models.build_model(name, 100)
    return _MODELS[name]


@pytest.mark.parametrize("method", sorted(METHODS))
@pytest.mark.parametrize("pair", ["same", "cross"])
def test_term_on_real_architectures(method, pair):
    teacher_name, student_name = SAME_FAMILY if pair == "same" else CROSS.get(method, ("vgg13", "mobilenetv2"))
    teacher, student = model(teacher_name), model(student_name)
    term = METHODS[method]()
    if isinstance(term, StagewiseTerm):
        term.bind_models(student, teacher)
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    student_taps, teacher_taps = FeatureTaps(student, term.student_taps), FeatureTaps(teacher, term.teacher_taps)
    try:
        student.zero_grad(set_to_none=True)
        logits = student(images)
        student_features = student_taps.pop()
        with torch.no_grad():
            teacher_logits = teacher(images)
        teacher_features = teacher_taps.pop()
    finally:
        student_taps.remove()
        teacher_taps.remove()
    term.setup(shapes(student_features), shapes(teacher_features), 100, 1000)
    value = term(DistillBatch(inputs=images, targets=torch.zeros(2, dtype=torch.long), indices=torch.arange(2),
                              student_logits=logits, teacher_logits=teacher_logits,
                              student_features=student_features, teacher_features=teacher_features))
    assert value.dim() == 0 and torch.isfinite(value)
    value.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0 and all(torch.isfinite(g).all() for g in grads)
    own = [p for p in term.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in own)


def test_kdsvd_refuses_a_cross_width_pair():
    teacher, student = model("resnet32x4"), model("shufflenetv2")
    term = KDSVDTerm()
    term.bind_models(student, teacher)
    shapes_s = {tap: torch.Size([2, c, 8, 8]) for tap, c in zip(term.student_taps, (116, 232, 464))}
    shapes_t = {tap: torch.Size([2, c, 8, 8]) for tap, c in zip(term.teacher_taps, (64, 128, 256))}
    with pytest.raises(ConfigError, match="equal student and teacher channel counts"):
        term.setup(shapes_s, shapes_t, 100, 1000)


@pytest.mark.parametrize("method", sorted(METHODS))
def test_config_instantiates(method):
    cfg = OmegaConf.load(CFG_KD / f"{method}.yaml")
    assert cfg.name == method
    terms = {name: hydra.utils.instantiate(node) for name, node in cfg.terms.items()}
    assert isinstance(terms[method], METHODS[method]) and terms[method].weight == cfg.terms[method].weight
    assert terms["ce"].weight == 1.0


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


def test_ab_connector_is_repdistiller_s():
    """RepDistiller models/util.py Connector: identity where channels and size match, else ConvReg without
    ReLU: 3x3 stride-2 conv (student map twice the teacher's), 4x4 stride-2 transposed conv (half), 1x1 conv
    (equal size), each with bias, then BatchNorm."""
    def connector(student, teacher):
        term = ABTerm(stages=[-1])
        term.setup({"preact:-1": torch.Size(student)}, {"preact:-1": torch.Size(teacher)}, 10, 100)
        return term.connectors[0]

    assert isinstance(connector((2, 8, 4, 4), (2, 8, 4, 4)), torch.nn.Identity)
    cases = [((2, 8, 8, 8), (2, 16, 4, 4), torch.nn.Conv2d, (3, 3), (2, 2)),
             ((2, 8, 4, 4), (2, 16, 8, 8), torch.nn.ConvTranspose2d, (4, 4), (2, 2)),
             ((2, 8, 4, 4), (2, 16, 4, 4), torch.nn.Conv2d, (1, 1), (1, 1))]
    for student, teacher, kind, kernel, stride in cases:
        layers = list(connector(student, teacher).body)
        assert [type(layer) for layer in layers] == [kind, torch.nn.BatchNorm2d], (student, teacher)
        assert (layers[0].kernel_size, layers[0].stride, layers[0].bias is not None) == (kernel, stride, True)
        x = torch.randn(*student)
        assert connector(student, teacher)(x).shape == teacher
    # equal shapes: the loss reads the student's own pre-activation, no trainable part
    s = {"preact:-1": random_maps(2, 3, 2, 2, seed=51, grad=True)}
    t = {"preact:-1": random_maps(2, 3, 2, 2, seed=52)}
    term = ABTerm(stages=[-1])
    term.setup(shapes(s), shapes(t), 10, 100)
    assert not list(term.parameters())
    pairs = zip(s["preact:-1"].detach().flatten().tolist(), t["preact:-1"].flatten().tolist())
    expected = sum((x + 1) ** 2 * (x > -1 and y <= 0) + (x - 1) ** 2 * (x <= 1 and y > 0) for x, y in pairs)
    assert term(features_batch(s, t, 2)).item() == pytest.approx(expected / 2 / 1000 * 3, rel=1e-5)


@pytest.mark.parametrize("term_class, pair, taps", [
    (ABTerm, ("vgg13", "vgg8"), ("preact:-4", "preact:-3", "preact:-2", "preact:-1")),  # feat[1:-1]: 4 stages
    (ABTerm, ("resnet56", "resnet20"), ("preact:-3", "preact:-2", "preact:-1")),
    (FSPTerm, ("vgg13", "vgg8"), ("stage:-5", "stage:-4", "stage:-3", "stage:-2", "stage:-1")),  # feat[:-1]
    (FSPTerm, ("wrn_40_2", "wrn_16_2"), ("stage:-4", "stage:-3", "stage:-2", "stage:-1"))])
def test_ab_and_fsp_default_stages_are_repdistiller_s(term_class, pair, taps):
    name = "ab" if term_class is ABTerm else "fsp"
    term = hydra.utils.instantiate(OmegaConf.load(CFG_KD / f"{name}.yaml").terms[name])
    term.bind_models(model(pair[1]), model(pair[0]))
    assert term.student_taps == term.teacher_taps == taps


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
    term = FTTerm(stage=-1, rate=0.5, p=1, form="full")
    term.setup({"stage:-1": s["stage:-1"].shape}, {"stage:-1": t["stage:-1"].shape}, 10, 100)
    batch = features_batch(s, t, 2)
    batch.phase = "paraphraser"
    reconstruction = term(batch)
    rebuilt = term.decoder(term.encoder(t["stage:-1"])).detach()
    assert reconstruction.item() == pytest.approx(((rebuilt - t["stage:-1"]) ** 2).mean().item(), rel=1e-5)
    batch.phase = None
    value = term(batch)
    factor_s = term.translator(s["stage:-1"]).detach().flatten(1)
    factor_t = term.encoder(t["stage:-1"]).detach().flatten(1)
    expected = 0.0
    for a, b in zip(factor_s.tolist(), factor_t.tolist()):
        expected += sum(abs(x - y) for x, y in zip(l2_normalise(a), l2_normalise(b)))
    assert value.item() == pytest.approx(expected / factor_s.numel(), rel=1e-5)
    value.backward()
    assert all(p.grad is None for p in term.encoder.parameters()), "the paraphraser only learns in its phase"
    assert term.translator[0].weight.grad.abs().sum() > 0


def ft_on_factors(student_factor, teacher_factor, **kwargs):
    """FT's loss on given factor maps: the term with its paraphraser and translator replaced by identities."""
    term = FTTerm(**kwargs)
    term.setup({"stage:-1": torch.Size([2, 3, 4, 4])}, {"stage:-1": torch.Size([2, 4, 4, 4])}, 10, 100)
    term.encoder, term.translator = torch.nn.Identity(), torch.nn.Identity()
    return term(features_batch({"stage:-1": student_factor}, {"stage:-1": teacher_factor}, 2)).item()


def pooled_by_two(feature):
    """(C, H, W) nested lists -> each channel's 2x2 block means."""
    return [[[sum(channel[2 * i + a][2 * j + b] for a in (0, 1) for b in (0, 1)) / 4
              for j in range(len(channel[0]) // 2)] for i in range(len(channel) // 2)] for channel in feature]


def test_factor_transfer_repdistiller_form_on_hand_made_factors():
    """RepDistiller distiller_zoo/FT.py: the larger factor map is average-pooled to the smaller; each factor
    becomes normalise(channel mean of factor^2) over the H*W positions; loss = mean |a_s - a_t| (p2 = 1)."""
    student = random_maps(2, 3, 4, 4, seed=27)  # the larger map: pooled to 2 x 2
    teacher = random_maps(2, 2, 2, 2, seed=28)

    def attention(feature):  # (C, H, W) nested lists -> normalised channel mean of squares over positions
        return l2_normalise([sum(channel[i][j] ** 2 for channel in feature) / len(feature)
                             for i in range(len(feature[0])) for j in range(len(feature[0][0]))])

    expected = sum(abs(x - y) for b in range(2) for x, y in zip(attention(pooled_by_two(student[b].tolist())),
                                                                  attention(teacher[b].tolist()))) / (2 * 4)
    assert ft_on_factors(student, teacher) == pytest.approx(expected, rel=1e-5)
    # the other way round: a larger teacher map is pooled, never the student's upsampled
    assert ft_on_factors(teacher, student) == pytest.approx(expected, rel=1e-5)
    # the paper's / torchdistill's form: whole factors, flattened and L2-normalised (torchdistill FTLoss, p 1)
    student = random_maps(2, 2, 4, 4, seed=29)
    full = sum(abs(x - y) for b in range(2)
               for x, y in zip(l2_normalise([v for c in pooled_by_two(student[b].tolist()) for r in c for v in r]),
                               l2_normalise(teacher[b].flatten().tolist()))) / (2 * 8)
    assert ft_on_factors(student, teacher, form="full") == pytest.approx(full, rel=1e-5)


def test_factor_transfer_modules_and_options():
    def norms(module):
        return sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.modules())

    shapes_s, shapes_t = {"stage:-1": torch.Size([2, 3, 4, 4])}, {"stage:-1": torch.Size([2, 8, 4, 4])}
    repdistiller = FTTerm()  # models/util.py: Paraphraser(use_bn=False), Translator(use_bn=True)
    repdistiller.setup(shapes_s, shapes_t, 10, 100)
    assert norms(repdistiller.encoder) == norms(repdistiller.decoder) == 0 and norms(repdistiller.translator) == 3
    convs = [m for m in repdistiller.encoder if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.bias is not None) for c in convs] == [(8, 8, True), (8, 4, True),
                                                                                    (4, 4, True)]
    assert [m.out_channels for m in repdistiller.translator if isinstance(m, torch.nn.Conv2d)] == [3, 4, 4]
    torchdistill = FTTerm(form="full", paraphraser_batchnorm=False, translator_batchnorm=False)  # uses_bn: False
    torchdistill.setup(shapes_s, shapes_t, 10, 100)
    assert norms(torchdistill) == 0
    with_bn = FTTerm(paraphraser_batchnorm=True)
    with_bn.setup(shapes_s, shapes_t, 10, 100)
    assert norms(with_bn.encoder) == norms(with_bn.decoder) == 3
    with pytest.raises(ConfigError, match=r"kd.terms.ft.form must be one of \['channel_mean', 'full'\]"):
        FTTerm(form="flat")
    cfg = OmegaConf.load(CFG_KD / "ft.yaml").terms.ft
    assert (cfg.form, cfg.factor_power, cfg.p, cfg.paraphraser_batchnorm, cfg.translator_batchnorm) == \
        ("channel_mean", 2, 1, False, True)


# ----------------------------------------------------------------------------------------------- OFD
from losses.ofd import OFDTerm, margin_from_batchnorm  # noqa: E402
from models import build_model  # noqa: E402
from models.features import preact_batchnorms  # noqa: E402


def test_ofd_margin_is_the_mean_of_the_negative_part():
    norm = torch.nn.BatchNorm2d(3)
    norm.weight.data = torch.tensor([1.0, 2.0, 0.5])
    norm.bias.data = torch.tensor([0.0, 1.0, 3.0])   # the last channel is almost never negative: -3 sigma
    expected = []
    for s, m in zip(norm.weight.tolist(), norm.bias.tolist()):
        cdf = 0.5 * (1 + math.erf(-m / s / math.sqrt(2)))
        expected.append(-s * math.exp(-(m / s) ** 2 / 2) / math.sqrt(2 * math.pi) / cdf + m if cdf > 0.001 else -3 * s)
    torch.testing.assert_close(margin_from_batchnorm(norm), torch.tensor(expected))
    # Monte-Carlo check of E[x | x < 0] for x ~ N(1, 2^2).
    x = torch.randn(2_000_000, generator=torch.Generator().manual_seed(0)) * 2 + 1
    assert x[x < 0].mean().item() == pytest.approx(expected[1], abs=0.01)


def test_preact_batchnorms_traced_and_declared():
    resnet = build_model("resnet8x4", 10)  # declared: the residual branch's BN, not the shortcut's
    found = preact_batchnorms(resnet, ["preact:-1", "preact:0"], torch.zeros(2, 3, 32, 32))
    assert found["preact:-1"] is resnet.layer3[0].bn2 and found["preact:0"] is resnet.bn1
    vgg = build_model("vgg8", 10)  # traced: the last BatchNorm run before the tap
    assert preact_batchnorms(vgg, ["preact:2"], torch.zeros(2, 3, 32, 32))["preact:2"] is vgg.block2[1]
    wrn = build_model("wrn_16_2", 10)
    assert preact_batchnorms(wrn, ["preact:1"], torch.zeros(2, 3, 32, 32))["preact:1"] is wrn.block2[0].bn1


def test_ofd_partial_l2():
    taps = ["preact:-2", "preact:-1"]
    s = {tap: random_maps(2, 3, 2, 2, seed=30 + i, grad=True) for i, tap in enumerate(taps)}
    t = {tap: random_maps(2, 4, 2, 2, seed=40 + i) for i, tap in enumerate(taps)}
    term = OFDTerm(stages=[-2, -1])
    for i in range(2):
        term.register_buffer(f"margin{i}", torch.tensor([-0.5, -1.0, -0.2, -2.0]))
    term.setup({k: v.shape for k, v in s.items()}, {k: v.shape for k, v in t.items()}, 10, 100)
    value = term(features_batch(s, t, 2))
    expected = 0.0
    for i, tap in enumerate(taps):
        source = term.connectors[i](s[tap]).detach()
        for b in range(2):
            for c in range(4):
                for y in range(2):
                    for x in range(2):
                        target = max(t[tap][b, c, y, x].item(), [-0.5, -1.0, -0.2, -2.0][c])
                        src = source[b, c, y, x].item()
                        if src > target or target > 0:
                            expected += (src - target) ** 2 / 2 / 2 ** (1 - i)
    assert value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()
    assert s[taps[0]].grad.abs().sum() > 0


def test_connector_methods_serve_1d_feature_maps():
    s = {"preact:-1": random_maps(2, 4, 10, seed=1, grad=True)}
    t = {"preact:-1": random_maps(2, 6, 10, seed=2)}
    term = ABTerm(stages=[-1])
    term.setup(shapes(s), shapes(t), 10, 100)
    assert isinstance(term.connectors[0].body[0], torch.nn.Conv1d)
    value = term(features_batch(s, t, 2))
    value.backward()
    assert torch.isfinite(value) and s["preact:-1"].grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="AB connects 1-d or 2-d feature maps"):
        ABTerm(stages=[-1]).setup({"preact:-1": torch.Size([2, 4])}, {"preact:-1": torch.Size([2, 6])}, 10, 100)
