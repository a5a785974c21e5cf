"""Metrics: accuracy, calibration, likelihood, and teacher-student fidelity.

Fidelity follows "Does Knowledge Distillation Really Work?" (Stanton et al., NeurIPS 2021): top-1 agreement,
KL(teacher || student) averaged over examples, and centred kernel alignment (CKA) between a teacher and a
student feature tap (Kornblith et al., ICML 2019). Accuracy, ECE and KL come from torchmetrics; it has no
per-example NLL or CKA, so those two are torchmetrics Metrics written here (their states sync under DDP).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError
from torchmetrics.regression import KLDivergence
from torchmetrics.utilities.data import dim_zero_cat

from errors import ConfigError
from models.features import FeatureTaps

# gnosis (the fidelity paper's code) bins confidence in 10 equal-width bins.
ECE_BINS = 10


def classification_metrics(num_classes: int, prefix: str) -> MetricCollection:
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
               "ece": MulticlassCalibrationError(num_classes, n_bins=ECE_BINS, norm="l1"),
               "nll": NegativeLogLikelihood()}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro")
    return MetricCollection(metrics, prefix=prefix)


class NegativeLogLikelihood(Metric):
    """Mean over examples of -log p(y_i | x_i), p = softmax(logits): the test NLL of Stanton et al.

    Summed per example and divided by the example count, so batches of any size weigh by their examples."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("nll_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, targets: torch.Tensor) -> None:
        # reduction="none" picks -log p_i(y_i) per row: shape (B,), never a (B, B) cross term.
        nll = F.cross_entropy(logits.double(), targets.long(), reduction="none")
        self.nll_sum += nll.sum()
        self.count += nll.numel()

    def compute(self) -> torch.Tensor:
        return self.nll_sum / self.count


# ----------------------------------------------------------------------------------------------- CKA
def _centre(gram: torch.Tensor) -> torch.Tensor:
    """H K H with H = I - 11^T / n, written as row/column mean removal (no n x n H is built)."""
    return gram - gram.mean(dim=0, keepdim=True) - gram.mean(dim=1, keepdim=True) + gram.mean()


def _hsic(centred_k: torch.Tensor, centred_l: torch.Tensor) -> torch.Tensor:
    """HSIC(K, L) = tr(K H L H) / (n - 1)^2 (Kornblith et al. 2019, Section 3); H is idempotent, so the
    trace equals the Frobenius inner product of the two centred Gram matrices."""
    n = centred_k.shape[0]
    return (centred_k * centred_l).sum() / (n - 1) ** 2


def median_pairwise_distance(x: torch.Tensor) -> torch.Tensor:
    """Median of the Euclidean distances ||x_i - x_j|| over the n(n-1)/2 pairs i < j (for an even count,
    the mean of the two middle values)."""
    sq = _squared_distances(x)
    n = x.shape[0]
    distances = sq[torch.ones(n, n, dtype=torch.bool, device=x.device).triu(diagonal=1)].sqrt()
    m = distances.numel()
    lower = distances.kthvalue((m + 1) // 2).values
    upper = distances.kthvalue(m // 2 + 1).values
    return (lower + upper) / 2


def _squared_distances(x: torch.Tensor) -> torch.Tensor:
    sq_norms = (x * x).sum(dim=1)
    # Rounding can leave tiny negatives where points coincide.
    return (sq_norms[:, None] + sq_norms[None, :] - 2 * x @ x.T).clamp_min(0)


def gram_matrix(x: torch.Tensor, kernel: str, rbf_sigma: float = 1.0) -> torch.Tensor:
    """Linear: K = X X^T. RBF: K_ij = exp(-||x_i - x_j||^2 / (2 sigma^2)) with sigma = rbf_sigma times the
    median pairwise distance, Kornblith et al.'s choice; it makes RBF CKA invariant to isotropic scaling."""
    if kernel == "linear":
        return x @ x.T
    if kernel == "rbf":
        sigma = rbf_sigma * median_pairwise_distance(x)
        return torch.exp(-_squared_distances(x) / (2 * sigma ** 2))
    raise ValueError(f"unknown CKA kernel '{kernel}'; use 'linear' or 'rbf'")


def cka(x: torch.Tensor, y: torch.Tensor, kernel: str = "linear", rbf_sigma: float = 1.0) -> torch.Tensor:
    """CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (Kornblith et al. 2019, Section 3) between two
    representations of the same n examples (rows), each flattened per example, computed in float64.
    NaN where it is undefined: fewer than 2 examples, a constant representation, or (RBF) a zero median
    distance."""
    x, y = x.flatten(1).double(), y.flatten(1).double()
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same examples on both sides, got {x.shape[0]} and {y.shape[0]} rows")
    if x.shape[0] < 2:
        return torch.tensor(math.nan, dtype=torch.float64, device=x.device)
    k = _centre(gram_matrix(x, kernel, rbf_sigma))
    l = _centre(gram_matrix(y, kernel, rbf_sigma))  # noqa: E741 - L is the paper's name
    return _hsic(k, l) / torch.sqrt(_hsic(k, k) * _hsic(l, l))


_MASK31 = (1 << 31) - 1


def _mix31(h: torch.Tensor) -> torch.Tensor:
    """A bijection of [0, 2^31) that scatters neighbouring integers: xor-shifts and odd multipliers modulo
    2^31 are each invertible, and products stay below 2^58, so int64 never overflows."""
    for _ in range(2):
        h = h ^ (h >> 16)
        h = (h * 0x45D9F3B) & _MASK31
    return h ^ (h >> 16)


def subset_keys(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """A pseudo-random key per example index (distinct for distinct indices < 2^31); the examples with the
    smallest keys form the subset. The seed enters between two mixes, so subsets of different seeds are
    not simple translates of one another; the offset keeps seed 0 from fixing index 0 at key 0."""
    seed_key = _mix31(torch.tensor((seed + 0x1E3779B9) & _MASK31, dtype=torch.int64, device=indices.device))
    return _mix31(_mix31(indices.long() & _MASK31) ^ seed_key)


def smallest_keys(indices: torch.Tensor, seed: int, k: int) -> torch.Tensor:
    """Positions of the (at most) k distinct indices with the smallest keys; a repeated index (e.g. the
    padding of a DistributedSampler) counts once."""
    keys = subset_keys(indices, seed)
    order = torch.argsort(keys, stable=True)
    sorted_keys = keys[order]
    first = torch.ones_like(sorted_keys, dtype=torch.bool)
    first[1:] = sorted_keys[1:] != sorted_keys[:-1]
    return order[first][:k]


class CKA(Metric):
    """CKA between teacher and student features on a fixed, seeded subset of at most `max_examples` examples.

    CKA needs all pairs of examples (n x n Gram matrices), so features are accumulated, not averaged.
    The subset is chosen by example index: each index gets a seeded pseudo-random key and the examples with
    the `max_examples` smallest keys are kept (pruned after every update, so memory stays bounded). The
    subset is thus a uniform random sample that is the same in every epoch and every run with the same
    seed, whatever the batch order or the way DDP shards the data; after DDP's gather the global smallest
    keys are kept. Features are stored in float32 (float64 if given) and the CKA is computed in float64.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, kernel: str = "linear", max_examples: int = 1024, rbf_sigma: float = 1.0,
                 subset_seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if kernel not in ("linear", "rbf"):
            raise ValueError(f"unknown CKA kernel '{kernel}'; use 'linear' or 'rbf'")
        self.kernel, self.max_examples, self.rbf_sigma, self.subset_seed = kernel, max_examples, rbf_sigma, subset_seed
        self.add_state("indices", [], dist_reduce_fx="cat")
        self.add_state("teacher", [], dist_reduce_fx="cat")
        self.add_state("student", [], dist_reduce_fx="cat")

    @staticmethod
    def _stored(features: torch.Tensor) -> torch.Tensor:
        features = features.detach().flatten(1)
        return features if features.dtype == torch.float64 else features.float()

    def update(self, teacher_features: torch.Tensor, student_features: torch.Tensor, indices: torch.Tensor) -> None:
        if indices is None:
            raise ValueError("CKA.update needs each example's index (the batch's third element) to pick the subset")
        if not (teacher_features.shape[0] == student_features.shape[0] == indices.shape[0]):
            raise ValueError(f"CKA.update needs one row per example: got {teacher_features.shape[0]} teacher, "
                             f"{student_features.shape[0]} student rows and {indices.shape[0]} indices")
        self.indices.append(indices.detach().long())
        self.teacher.append(self._stored(teacher_features))
        self.student.append(self._stored(student_features))
        if sum(len(i) for i in self.indices) > self.max_examples:
            indices, teacher, student = (dim_zero_cat(s) for s in (self.indices, self.teacher, self.student))
            keep = smallest_keys(indices, self.subset_seed, self.max_examples)
            self.indices, self.teacher, self.student = [indices[keep]], [teacher[keep]], [student[keep]]

    def selected(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(indices, teacher features, student features) of the subset, in key order."""
        if len(self.indices) == 0:  # a list before DDP's sync, a tensor after it
            return (torch.empty(0, dtype=torch.long), torch.empty(0, 0), torch.empty(0, 0))
        indices, teacher, student = (dim_zero_cat(s) for s in (self.indices, self.teacher, self.student))
        keep = smallest_keys(indices, self.subset_seed, self.max_examples)
        return indices[keep], teacher[keep], student[keep]

    def compute(self) -> torch.Tensor:
        _, teacher, student = self.selected()
        return cka(teacher, student, self.kernel, self.rbf_sigma)


# ----------------------------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class FidelitySettings:
    """The `fidelity` block of cfg/distill.yaml, checked."""

    cka_teacher_tap: str | None = None  # None: no CKA
    cka_student_tap: str | None = None
    cka_max_examples: int = 1024
    cka_rbf_sigma: float = 1.0
    cka_subset_seed: int = 0

    @property
    def cka(self) -> bool:
        return self.cka_teacher_tap is not None


def fidelity_settings(node) -> FidelitySettings:
    """The `fidelity` config block (a mapping, or None for the defaults without CKA) -> FidelitySettings."""
    if isinstance(node, FidelitySettings):
        return node
    if node is None:
        return FidelitySettings()
    if not isinstance(node, Mapping):
        raise ConfigError(f"fidelity must be a mapping like {{cka_taps: {{teacher: embedding, student: embedding}}, "
                          f"cka_max_examples: 1024}}, got {node!r}")
    known = ("cka_taps", "cka_max_examples", "cka_rbf_sigma", "cka_subset_seed")
    unknown = sorted(set(node) - set(known))
    if unknown:
        raise ConfigError(f"fidelity has unknown keys {unknown}; use {', '.join(known)}")
    taps = node.get("cka_taps")
    if taps is not None and not (isinstance(taps, Mapping) and set(taps) == {"teacher", "student"}
                                 and all(isinstance(taps[side], str) and taps[side] for side in taps)):
        raise ConfigError(f"fidelity.cka_taps must name one tap per model, e.g. "
                          f"fidelity.cka_taps={{teacher: embedding, student: embedding}}, or be null to switch "
                          f"CKA off; got {taps!r}")
    max_examples = node.get("cka_max_examples", 1024)
    if isinstance(max_examples, bool) or not isinstance(max_examples, int) or max_examples < 2:
        raise ConfigError(f"fidelity.cka_max_examples must be an integer of at least 2 (CKA compares pairs of "
                          f"examples), got {max_examples!r}; use e.g. fidelity.cka_max_examples=1024")
    sigma = node.get("cka_rbf_sigma", 1.0)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (0 < sigma < math.inf):
        raise ConfigError(f"fidelity.cka_rbf_sigma must be a positive number (the RBF bandwidth as a fraction "
                          f"of the median pairwise distance), got {sigma!r}; use e.g. fidelity.cka_rbf_sigma=1.0")
    seed = node.get("cka_subset_seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"fidelity.cka_subset_seed must be an integer, got {seed!r}; use e.g. "
                          f"fidelity.cka_subset_seed=0")
    return FidelitySettings(taps["teacher"] if taps else None, taps["student"] if taps else None,
                            max_examples, float(sigma), seed)


class CKATaps:
    """Forward hooks for the CKA feature taps, separate from the objective's taps so training sees no extra
    feature. `pop()` -> (teacher feature, student feature) of the last forwards, None where a tap did not fire."""

    def __init__(self, teacher_model: nn.Module, student: nn.Module, settings: FidelitySettings) -> None:
        self.teacher_tap, self.student_tap = settings.cka_teacher_tap, settings.cka_student_tap
        self.taps = []
        for side, model, tap in (("teacher", teacher_model, self.teacher_tap), ("student", student, self.student_tap)):
            try:
                self.taps.append(FeatureTaps(model, [tap]))
            except ConfigError as error:
                raise ConfigError(f"fidelity.cka_taps.{side}: {error}") from None

    def pop(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        teacher, student = (taps.pop() for taps in self.taps)
        return teacher.get(self.teacher_tap), student.get(self.student_tap)


class FidelityMetrics(MetricCollection):
    """Student-teacher fidelity: top-1 agreement, KL(teacher || student) per example, teacher top-1, and with
    CKA taps set, linear and RBF CKA between the teacher's and the student's tapped features."""

    def __init__(self, num_classes: int, prefix: str, settings: FidelitySettings | None = None) -> None:
        settings = settings or FidelitySettings()
        # KLDivergence sums the per-example KL and divides by the example count: a mean over examples.
        metrics = {"agreement": MulticlassAccuracy(num_classes, average="micro"),
                   "kl": KLDivergence(log_prob=True, reduction="mean"),
                   "teacher_top1": MulticlassAccuracy(num_classes, average="micro")}
        if settings.cka:
            common = dict(max_examples=settings.cka_max_examples, subset_seed=settings.cka_subset_seed)
            metrics["cka_linear"] = CKA("linear", **common)
            metrics["cka_rbf"] = CKA("rbf", rbf_sigma=settings.cka_rbf_sigma, **common)
        # No compute groups: agreement and teacher_top1 share a type and could be merged on equal first states.
        super().__init__(metrics, prefix=prefix, compute_groups=False)
        self.with_cka = settings.cka

    def update(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, targets: torch.Tensor,
               teacher_features: torch.Tensor | None = None, student_features: torch.Tensor | None = None,
               indices: torch.Tensor | None = None) -> None:
        student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
        self["agreement"].update(student_logits, teacher_logits.argmax(dim=1))
        self["kl"].update(teacher_logits.log_softmax(dim=1), student_logits.log_softmax(dim=1))
        self["teacher_top1"].update(teacher_logits, targets)
        # A teacher that answers without a forward (e.g. from a cache) gives no features: CKA skips the batch.
        if self.with_cka and teacher_features is not None and student_features is not None:
            for name in ("cka_linear", "cka_rbf"):
                self[name].update(teacher_features, student_features, indices)
