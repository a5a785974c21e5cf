"""Comparative KD (Wilf et al., "Comparative Knowledge Distillation", WACV 2025): with few teacher calls,
distil *differences* between examples rather than each example's output. For pairs (i, j) of distinct
examples in a batch: relational term = mean over pairs and classes of ((z_i - z_j) - (v_i - v_j))^2, and the
label term = the same with one-hot label differences as the target; value = relational + weight_label * label.
Pairs: every ordered pair (`all`), or `num_pairs` random ones (seeded per step, so runs repeat)."""
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm


class CKDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, weight_label: float = 1.0, pairs: str = "all",
                 num_pairs: int | None = None, seed: int = 0) -> None:
        super().__init__(weight)
        if pairs not in ("all", "random"):
            raise ConfigError(f"kd.terms.ckd.pairs must be 'all' or 'random', got '{pairs}'")
        if num_pairs is not None and not (int(num_pairs) == num_pairs and num_pairs >= 1):
            raise ConfigError(f"kd.terms.ckd.num_pairs must be a positive integer or null (= batch size), "
                              f"got {num_pairs}")
        if not weight_label >= 0:
            raise ConfigError(f"kd.terms.ckd.weight_label must be >= 0, got {weight_label}; the CKD code uses 1")
        self.weight_label, self.pairs, self.seed = float(weight_label), pairs, int(seed)
        self.num_pairs = None if num_pairs is None else int(num_pairs)

    def pair_indices(self, batch_size: int, step: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pairs == "all":
            first, second = torch.meshgrid(torch.arange(batch_size), torch.arange(batch_size), indexing="ij")
            keep = first != second
            return first[keep].to(device), second[keep].to(device)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        count = self.num_pairs or batch_size
        first = torch.randint(batch_size, (count,), generator=generator)
        # An offset in [1, B) guarantees j != i.
        second = (first + torch.randint(1, batch_size, (count,), generator=generator)) % batch_size
        return first.to(device), second.to(device)

    def forward(self, batch: DistillBatch):
        student, teacher = batch.student_logits.float(), batch.teacher_logits.float()
        if student.shape[0] < 2:  # a single example has no pair to compare with
            return student.sum() * 0
        first, second = self.pair_indices(student.shape[0], batch.global_step, student.device)
        labels = F.one_hot(batch.targets, student.shape[1]).float()
        difference = student[first] - student[second]
        relational = F.mse_loss(difference, teacher[first] - teacher[second])
        label = F.mse_loss(difference, labels[first] - labels[second])
        return relational + self.weight_label * label
