"""Fidelity metrics (Stanton et al., NeurIPS 2021) and CKA (Kornblith et al., ICML 2019) against hand
computations written from the formulas here, and end to end through run_distill into the run record."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from errors import ConfigError
from models import build_model
from tasks.metrics import CKA, CKATaps, FidelityMetrics, classification_metrics, fidelity_settings
from runs.training import build_distillation, run_distill, run_train
from tests.helpers import compose_config, tiny_overrides


# ----------------------------------------------------------------------------------------------- references
def reference_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in feature space (Kornblith et al. 2019, Table 1): ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F), columns
    centred."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    return np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def reference_rbf_cka(x: np.ndarray, y: np.ndarray, factor: float = 1.0) -> float:
    """HSIC(K, L) = tr(K H L H) / (n - 1)^2 with an explicit H; K_ij = exp(-d_ij^2 / (2 sigma^2)),
    sigma = factor * median of d_ij over pairs i < j."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n

    def gram(z):
        d = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(axis=-1))
        sigma = factor * np.median(d[np.triu_indices(n, k=1)])
        return np.exp(-d ** 2 / (2 * sigma ** 2))

    def hsic(k, l):  # noqa: E741
        return np.trace(k @ h @ l @ h) / (n - 1) ** 2

    k, l = gram(x), gram(y)  # noqa: E741
    return hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))


REFERENCE = {"linear": reference_linear_cka, "rbf": reference_rbf_cka}


def metric_cka(kernel: str, x, y, batches=(7, 11), max_examples: int = 1024, seed: int = 0, **kwargs) -> float:
    """The CKA Metric fed in batches of the given sizes (cycled), indices 0..n-1."""
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    metric = CKA(kernel, max_examples=max_examples, subset_seed=seed, **kwargs)
    start, i = 0, 0
    while start < len(x):
        stop = start + batches[i % len(batches)]
        metric.update(x[start:stop], y[start:stop], torch.arange(start, min(stop, len(x))))
        start, i = stop, i + 1
    return float(metric.compute())


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# ----------------------------------------------------------------------------------------------- CKA
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_of_a_representation_with_itself_is_one(kernel, rng):
    x = rng.standard_normal((40, 12))
    assert metric_cka(kernel, x, x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_matches_the_formula_with_different_widths(kernel, rng):
    # A shared signal so the value is far from 0 and 1; features as (n, c, l) maps are flattened per example.
    z = rng.standard_normal((37, 4))
    x = np.concatenate([z @ rng.standard_normal((4, 12)), rng.standard_normal((37, 12))], axis=1)
    y = np.tanh(z @ rng.standard_normal((4, 5))) + 0.3 * rng.standard_normal((37, 5))
    expected = REFERENCE[kernel](x, y)
    assert 0.05 < expected < 0.95
    assert metric_cka(kernel, x.reshape(37, 4, 6), y) == pytest.approx(expected, rel=1e-10)


def test_rbf_bandwidth_factor_is_the_fraction_of_the_median_distance(rng):
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((30, 3))
    for factor in (0.4, 2.0):
        assert metric_cka("rbf", x, y, rbf_sigma=factor) == pytest.approx(reference_rbf_cka(x, y, factor), rel=1e-10)
    assert metric_cka("rbf", x, y, rbf_sigma=0.4) != pytest.approx(metric_cka("rbf", x, y), rel=1e-3)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling(kernel, rng):
    x = rng.standard_normal((32, 8))
    y = np.maximum(x @ rng.standard_normal((8, 6)), 0) + 0.5 * rng.standard_normal((32, 6))
    base = metric_cka(kernel, x, y)
    qx, qy = random_orthogonal(8, rng), random_orthogonal(6, rng)
    for x2, y2 in ((x @ qx, y), (x, y @ qy), (x @ qx, y @ qy), (3.7 * x, y), (x, 0.01 * y), (250 * x @ qx, 0.2 * y)):
        assert metric_cka(kernel, x2, y2) == pytest.approx(base, rel=1e-9)
    # Not invariant to any invertible linear map (Kornblith et al.'s point): the checks above are not vacuous.
    stretch = np.diag([30.0, 1, 1, 1, 1, 1, 1, 0.05])
    assert abs(metric_cka(kernel, x @ stretch, y) - base) > 1e-3


def test_cka_on_a_subset_is_fixed_seeded_and_independent_of_batching(rng):
    n, k = 200, 50
    x, y = rng.standard_normal((n, 9)), rng.standard_normal((n, 4)) + rng.standard_normal((n, 9))[:, :4]

    def run(order, batches, seed=0, duplicate_tail=0):
        metric = CKA("linear", max_examples=k, subset_seed=seed)
        order = np.concatenate([order, order[:duplicate_tail]])  # a DistributedSampler's padding repeats examples
        start, i = 0, 0
        while start < len(order):
            rows = torch.as_tensor(order[start:start + batches[i % len(batches)]])
            metric.update(torch.as_tensor(x)[rows], torch.as_tensor(y)[rows], rows)
            start, i = start + len(rows), i + 1
        chosen = metric.selected()[0]
        return sorted(chosen.tolist()), float(metric.compute())

    chosen, value = run(np.arange(n), (16,))
    assert len(chosen) == k == len(set(chosen)) and set(chosen) <= set(range(n))
    assert chosen != list(range(k)), "a random subset, not the first examples"
    assert value == pytest.approx(reference_linear_cka(x[chosen], y[chosen]), rel=1e-10)
    assert run(rng.permutation(n), (3, 17, 64)) == (chosen, pytest.approx(value, rel=1e-12))
    assert run(np.arange(n), (16,), duplicate_tail=30) == (chosen, pytest.approx(value, rel=1e-12))
    other, _ = run(np.arange(n), (16,), seed=1)
    assert other != chosen and run(np.arange(n), (5,), seed=1)[0] == other


def test_cka_under_ddp_keeps_the_global_subset(rng):
    """Two simulated ranks, sharded like a DistributedSampler (rank r takes r, r + 2, ...; the short rank is
    padded with a repeat of index 0): after the gather, the same subset and value as one process."""
    n, k = 121, 40
    x, y = torch.as_tensor(rng.standard_normal((n, 6))), torch.as_tensor(rng.standard_normal((n, 3)))
    shards = [torch.arange(0, n, 2), torch.cat([torch.arange(1, n, 2), torch.tensor([0])])]
    gathered = []  # rank 1's states, in add_state order, handed to rank 0's gather

    def gather(tensor, group=None):
        return [tensor, gathered.pop(0)]

    ranks = [CKA("rbf", max_examples=k, dist_sync_fn=gather, distributed_available_fn=lambda: True),
             CKA("rbf", max_examples=k)]
    for metric, rows in zip(ranks, shards):
        for batch in rows.split(16):
            metric.update(x[batch], y[batch], batch)
    gathered.extend(torch.cat(getattr(ranks[1], state)) for state in ("indices", "teacher", "student"))
    single = CKA("rbf", max_examples=k)
    single.update(x, y, torch.arange(n))
    assert float(ranks[0].compute()) == pytest.approx(float(single.compute()), rel=1e-12)
    assert not gathered, "every state went through the gather"


def test_cka_rejects_rows_that_do_not_line_up():
    with pytest.raises(ValueError, match="one row per example"):
        CKA().update(torch.zeros(4, 3), torch.zeros(5, 3), torch.arange(4))


# ----------------------------------------------------------------------------------------------- agreement, KL, NLL
def test_agreement_kl_and_teacher_top1_on_known_distributions():
    # Logits are log-probabilities (plus a per-row constant, to which softmax is blind).
    teacher = [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]
    student = [[0.25, 0.5, 0.25], [0.2, 0.6, 0.2], [0.7, 0.1, 0.2], [0.1, 0.1, 0.8]]
    teacher_logits = torch.tensor(teacher).log()
    student_logits = torch.tensor(student).log() + torch.tensor([[0.0], [1.0], [-2.0], [5.0]])
    targets = torch.tensor([0, 1, 2, 2])
    metrics = FidelityMetrics(3, "val/")
    metrics.update(student_logits, teacher_logits, targets)
    result = {k: float(v) for k, v in metrics.compute().items()}
    # KL per example: 0.5 log 2 + 0.25 log(1/2) = 0.25 log 2; 0; 0.2 log 2 + 0.1 log(1/2) = 0.1 log 2; 0.
    assert result["val/kl"] == pytest.approx((0.25 + 0.1) / 4 * math.log(2), rel=1e-5)
    # Argmaxes: teacher 0, 1, 0, 2; student 1, 1, 0, 2.
    assert result["val/agreement"] == pytest.approx(3 / 4)
    assert result["val/teacher_top1"] == pytest.approx(3 / 4)
    assert "val/cka_linear" not in result


def test_nll_is_a_mean_over_examples_not_a_batch_by_batch_average():
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.98, 0.01, 0.01]],
                         dtype=torch.float64)
    targets = torch.tensor([0, 1, 2, 2])  # three right and confident, one confidently wrong
    metrics = classification_metrics(3, "test/")
    metrics.update(probs.log(), targets)
    expected = (3 * -math.log(0.9) - math.log(0.01)) / 4
    # The (B,) vs (B, 1) broadcast bug averages -log p_i(y_j) over all B x B pairs i, j.
    broadcast_bug = float(np.mean(-np.log(probs.numpy()[:, targets.numpy()])))
    assert abs(expected - broadcast_bug) > 0.5
    assert float(metrics.compute()["test/nll"]) == pytest.approx(expected, rel=1e-9)


def test_metrics_accumulate_over_batches_of_different_sizes():
    torch.manual_seed(0)
    n, classes = 16, 10
    student, teacher = torch.randn(n, classes) * 2, torch.randn(n, classes) * 2
    targets, indices = torch.randint(0, classes, (n,)), torch.arange(n)
    t_features, s_features = torch.randn(n, 8, 3, dtype=torch.float64), torch.randn(n, 5, dtype=torch.float64)
    settings = fidelity_settings({"cka_taps": {"teacher": "embedding", "student": "embedding"}})

    def computed(sizes):
        fidelity, classification = FidelityMetrics(classes, "val/", settings), classification_metrics(classes, "val/")
        start = 0
        for size in sizes:
            rows = slice(start, start + size)
            fidelity.update(student[rows], teacher[rows], targets[rows], t_features[rows], s_features[rows],
                            indices[rows])
            classification.update(student[rows], targets[rows])
            start += size
        return {k: float(v) for k, v in {**fidelity.compute(), **classification.compute()}.items()}

    whole, batched = computed([16]), computed([3, 5, 8])
    assert set(whole) >= {"val/agreement", "val/kl", "val/teacher_top1", "val/cka_linear", "val/cka_rbf",
                          "val/nll", "val/ece", "val/top1", "val/top5"}
    assert batched == pytest.approx(whole, rel=1e-6)
    log_p = torch.log_softmax(student.double(), 1)
    assert whole["val/nll"] == pytest.approx(float(-log_p[torch.arange(n), targets].mean()), rel=1e-9)
    kl = (torch.softmax(teacher.double(), 1) * (torch.log_softmax(teacher.double(), 1) - log_p)).sum(1).mean()
    assert whole["val/kl"] == pytest.approx(float(kl), rel=1e-5)
    assert whole["val/cka_linear"] == pytest.approx(reference_linear_cka(t_features.reshape(n, -1).numpy(),
                                                                         s_features.numpy()), rel=1e-10)


# ----------------------------------------------------------------------------------------------- configuration
@pytest.mark.parametrize("block,message", [
    ({"cka_max_examples": 1}, "cka_max_examples must be an integer of at least 2"),
    ({"cka_max_examples": 64.5}, "cka_max_examples must be an integer"),
    ({"cka_taps": {"teacher": "embedding"}}, "cka_taps must name one tap per model"),
    ({"cka_rbf_sigma": 0}, "cka_rbf_sigma must be a positive number"),
    ({"cka_tap": "embedding"}, r"unknown keys \['cka_tap'\]"),
])
def test_bad_fidelity_block_is_one_clear_error(block, message):
    with pytest.raises(ConfigError, match=message):
        fidelity_settings(block)


@pytest.mark.parametrize("taps,message", [
    ({"teacher": "embedding", "student": "stage:5"},
     r"fidelity.cka_taps.student: feature tap 'stage:5' does not exist on mlp1d, .* use an index in \[-2, 1\]"),
    ({"teacher": "penultimate", "student": "embedding"},
     r"fidelity.cka_taps.teacher: unknown feature tap 'penultimate'; use 'stage:<i>'"),
])
def test_unknown_cka_tap_names_the_setting_and_the_valid_taps(taps, message):
    settings = fidelity_settings({"cka_taps": taps})
    with pytest.raises(ConfigError, match=message):
        CKATaps(build_model("cnn1d", 10, (1, 40)), build_model("mlp1d", 10, (1, 40)), settings)


# ----------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def teacher_checkpoint(data_dir, tmp_path_factory) -> str:
    outputs = tmp_path_factory.mktemp("fidelity_teacher")
    record = run_train(compose_config("train", tiny_overrides(data_dir, outputs, "model=cnn1d")), quiet=True)
    return record["checkpoints"]["last"]


def distill_config(data_dir, outputs, teacher_checkpoint, *extra):
    return compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment", "student=mlp1d",
                                                    "teacher/model=cnn1d", f"teacher.checkpoint={teacher_checkpoint}",
                                                    *extra))


def test_run_record_holds_every_fidelity_metric(data_dir, tmp_path, teacher_checkpoint):
    # 128 validation and 128 test examples, CKA on 100 of them; a (B, 128, 10) teacher map against the
    # student's embedding.
    record = run_distill(distill_config(data_dir, tmp_path, teacher_checkpoint, "fidelity.cka_max_examples=100",
                                        "fidelity.cka_taps.teacher=stage:-1"), quiet=True)
    for split in ("last", "best"):
        for stage in ("val", "test"):
            metrics = {name: record[split][f"{stage}/{name}"]
                       for name in ("nll", "ece", "agreement", "kl", "cka_linear", "cka_rbf")}
            assert all(math.isfinite(v) for v in metrics.values()), (split, stage, metrics)
            assert 0 <= metrics["cka_linear"] <= 1 + 1e-9 and 0 <= metrics["cka_rbf"] <= 1 + 1e-9
            assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["agreement"] <= 1 and metrics["kl"] >= 0
            # Lightning's batch-size-weighted mean of the per-batch cross-entropy is the same per-example mean.
            assert metrics["nll"] == pytest.approx(record[split][f"{stage}/loss"], rel=1e-5)


def test_cka_taps_leave_the_training_features_alone(data_dir, tmp_path, teacher_checkpoint):
    cfg = distill_config(data_dir, tmp_path, teacher_checkpoint, "kd=sp",
                         "fidelity.cka_taps.student=stage:0")
    cfg.run_dir = str(tmp_path)
    datamodule, task, _ = build_distillation(cfg)
    x = datamodule.train_set[0][0].unsqueeze(0).repeat(4, 1, 1)
    task.model(x)
    _, teacher_features = task.teacher(x)
    assert "stage:0" not in task.objective.student_taps
    assert set(task.student_taps.pop()) == set(task.objective.student_taps)
    assert set(teacher_features) == set(task.objective.teacher_taps)
    teacher_feature, student_feature = task.cka_taps.pop()
    assert teacher_feature.shape[0] == student_feature.shape[0] == 4


def test_bad_fidelity_config_stops_before_training(data_dir, tmp_path, teacher_checkpoint):
    with pytest.raises(ConfigError, match="cka_max_examples must be an integer of at least 2"):
        run_distill(distill_config(data_dir, tmp_path, teacher_checkpoint, "fidelity.cka_max_examples=1"), quiet=True)
    assert not (tmp_path / "distill").exists()
    cfg = distill_config(data_dir, tmp_path, teacher_checkpoint, "fidelity.cka_taps=null")
    cfg.run_dir = str(tmp_path)
    _, task, _ = build_distillation(cfg)
    assert task.cka_taps is None and "cka_linear" not in task.val_fidelity
