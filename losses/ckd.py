"""Comparative KD (Wilf et al., "Comparative Knowledge Distillation", WACV 2025; code alextxu/ckd): with few
teacher calls, distil *differences* between examples rather than each example's output.

`pairs: pool` (default; the anchor's dataset/sampling/CKDSample.py and helper/CKDTrainHelpers.py): the training
batch is made of tuples (losses.base.TupleBatches) of `pos_and_neg` distinct examples, pos_and_neg - pos_and_neg
// 2 "positives" and pos_and_neg // 2 "negatives" (train_student.py), drawn from a pool of at most `pool_size`
tuples fixed once per run (--max_rel_samples 100000), data.batch_size tuples a step. Per tuple, the mean over its
positives minus the mean over its negatives of the student's logits (z), the teacher's logits (v) and the
one-hot labels (y); value = MSE(z+ - z-, v+ - v-) + weight_label * MSE(z+ - z-, y+ - y-), each a mean over
tuples and classes (CKD: w_rel * MSELoss on logits + w_cls * MSELoss on labels; weight = w_rel, weight_label =
w_cls / w_rel).

`pairs: all` / `random` (this project's earlier in-batch form, not the anchor's): pairs (i, j) of distinct
examples of an ordinary batch, every ordered pair or `num_pairs` random ones (seeded per step), the same two
mean squared errors on z_i - z_j.
"""
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm, TupleBatches

PAIRINGS = ("pool", "all", "random")


class CKDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, weight_label: float = 1.0, pairs: str = "pool", pos_and_neg: int = 2,
                 pool_size: int = 100_000, num_pairs: int | None = None, seed: int = 0) -> None:
        super().__init__(weight)
        if pairs not in PAIRINGS:
            raise ConfigError(f"kd.terms.ckd.pairs must be one of {list(PAIRINGS)} ('pool' is the CKD code's), "
                              f"got '{pairs}'")
        if num_pairs is not None and not (int(num_pairs) == num_pairs and num_pairs >= 1):
            raise ConfigError(f"kd.terms.ckd.num_pairs must be a positive integer or null (= batch size), "
                              f"got {num_pairs}")
        if not weight_label >= 0:
            raise ConfigError(f"kd.terms.ckd.weight_label must be >= 0, got {weight_label}; the CKD code uses 1")
        if isinstance(pos_and_neg, bool) or int(pos_and_neg) != pos_and_neg or pos_and_neg < 2:
            raise ConfigError(f"kd.terms.ckd.pos_and_neg must be an integer >= 2 (examples per tuple), got "
                              f"{pos_and_neg!r}; the CKD code sweeps 2 and 3")
        if isinstance(pool_size, bool) or int(pool_size) != pool_size or pool_size < 1:
            raise ConfigError(f"kd.terms.ckd.pool_size must be a positive integer, got {pool_size!r}; the CKD code "
                              f"uses 100000 (--max_rel_samples)")
        self.weight_label, self.pairs, self.seed = float(weight_label), pairs, int(seed)
        self.num_pairs = None if num_pairs is None else int(num_pairs)
        negatives = int(pos_and_neg) // 2
        if pairs == "pool":
            self.train_batches = TupleBatches(int(pos_and_neg) - negatives, negatives, int(pool_size))

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

    def differences(self, batch: DistillBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """(student, teacher, label) differences, one row per tuple or pair; None for a batch with no pair."""
        student, teacher = batch.student_logits.float(), batch.teacher_logits.float()
        labels = F.one_hot(batch.targets, student.shape[1]).float()
        if self.train_batches is not None:
            positives, negatives = self.train_batches.blocks(len(student))
            tuples = positives // self.train_batches.positives

            def difference(values: torch.Tensor) -> torch.Tensor:
                plus, minus = values.split([positives, negatives])
                return (plus.reshape(tuples, -1, values.shape[1]).mean(dim=1)
                        - minus.reshape(tuples, -1, values.shape[1]).mean(dim=1))
            return difference(student), difference(teacher), difference(labels)
        if student.shape[0] < 2:  # a single example has no pair to compare with
            return None
        first, second = self.pair_indices(student.shape[0], batch.global_step, student.device)
        return (student[first] - student[second], teacher[first] - teacher[second], labels[first] - labels[second])

    def forward(self, batch: DistillBatch):
        found = self.differences(batch)
        if found is None:
            return batch.student_logits.sum() * 0
        student, teacher, labels = found
        return F.mse_loss(student, teacher) + self.weight_label * F.mse_loss(student, labels)

    def extra_repr(self) -> str:
        layout = f", tuples={self.train_batches}" if self.train_batches is not None else ""
        return f"weight={self.weight}, weight_label={self.weight_label}, pairs={self.pairs}{layout}"
