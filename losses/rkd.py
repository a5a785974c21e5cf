"""Relational KD: Park et al., CVPR 2019 (RepDistiller's RKDLoss), on the embeddings (feat[-1]).
Distance-wise: pairwise Euclidean distances, each model's divided by its mean over distinct pairs, compared
by smooth L1 (Huber, delta 1) averaged over all B x B entries. Angle-wise: cosines of the angles
<e_i - e_j, e_k - e_j> over all B^3 triplets, compared by smooth L1. Value = w_d * distance + w_a * angle.
Both compare B x B (x B) relations, so embedding widths may differ.

`student_tap` / `teacher_tap` name what is compared: "embedding" (RepDistiller's feat[-1], default), another
feature tap, or "logits" (comparative KD's RKD arm, alextxu/ckd helper/TrainHelpers.py: RKDLoss on the logits).
`per_class`: null trains on the loader's shuffled batches; k trains on batches of k examples from each of
randomly ordered classes (CKD's dataset/sampling/RKDSampler.py, m=5)."""
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import ClassGroupedBatches, DistillBatch, DistillTerm, hooked_taps, read_input

# clamp before the square root: its gradient at 0 (the diagonal) would be infinite
DISTANCE_EPS = 1e-12


def pairwise_distances(e: torch.Tensor) -> torch.Tensor:
    squared = e.pow(2).sum(dim=1)
    distances = (squared[:, None] + squared[None, :] - 2 * e @ e.t()).clamp_min(DISTANCE_EPS).sqrt()
    return distances * (1 - torch.eye(len(e), device=e.device))


def normalised_distances(e: torch.Tensor) -> torch.Tensor:
    distances = pairwise_distances(e)
    return distances / distances[distances > 0].mean()


def angles(e: torch.Tensor) -> torch.Tensor:
    differences = F.normalize(e.unsqueeze(0) - e.unsqueeze(1), dim=2)   # [j, i] = e_i - e_j, unit
    return torch.bmm(differences, differences.transpose(1, 2)).flatten()


class RKDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, weight_distance: float = 25.0, weight_angle: float = 50.0,
                 student_tap: str = "embedding", teacher_tap: str = "embedding", per_class: int | None = None) -> None:
        super().__init__(weight)
        self.student_tap, self.teacher_tap = str(student_tap), str(teacher_tap)
        self.student_taps, self.teacher_taps = hooked_taps(self.student_tap), hooked_taps(self.teacher_tap)
        if per_class is not None:
            if isinstance(per_class, bool) or int(per_class) != per_class or per_class < 1:
                raise ConfigError(f"kd.terms.rkd.per_class must be a positive integer or null, got {per_class!r}; "
                                  f"the CKD code's RKDSampler uses 5")
            self.train_batches = ClassGroupedBatches(int(per_class))
        self.weight_distance, self.weight_angle = float(weight_distance), float(weight_angle)
        if not (self.weight_distance >= 0 and self.weight_angle >= 0) or self.weight_distance + self.weight_angle == 0:
            raise ConfigError(f"kd.terms.rkd needs weight_distance, weight_angle >= 0, not both 0; got "
                              f"{weight_distance}, {weight_angle}; use 25 and 50 (the paper's and RepDistiller's)")

    def forward(self, batch: DistillBatch):
        student = read_input(batch, self.student_tap, "student").float().flatten(1)
        teacher = read_input(batch, self.teacher_tap, "teacher").float().flatten(1)
        distance = F.smooth_l1_loss(normalised_distances(student), normalised_distances(teacher))
        angle = F.smooth_l1_loss(angles(student), angles(teacher))
        return self.weight_distance * distance + self.weight_angle * angle

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, weight_distance={self.weight_distance}, weight_angle={self.weight_angle}, "
                f"student_tap={self.student_tap}, teacher_tap={self.teacher_tap}")
