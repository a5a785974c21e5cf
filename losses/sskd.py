"""SSKD: Xu et al., "Knowledge Distillation Meets Self-Supervision", ECCV 2020, as its authors' code.

Every training image comes with its three rotations (90, 180, 270 degrees), interleaved per example
(`expand_batch`), and both models see all 4B images. Each model has a projection head (Linear-ReLU-Linear on
its embedding). Rows of the similarity matrix are the 3B rotated images, columns the B unrotated ones:
S[j, i] = cos(h(rotated_j), h(unrotated_i)); row j's "right answer" is the image it was rotated from.

- Teacher head pre-training (phase `head_phase`, the teacher frozen): cross-entropy of the rows of S_t
  against their right answers (no temperature).
- Student (main phase), with T_kd = T_tf = 4, T_ss = 0.5:
    weight_ce * CE(student, y) on the unrotated images
  + weight_kd * T_kd^2 KL(softmax(v/T_kd) || softmax(z/T_kd)) on the unrotated images
  + weight_tf * T_tf^2 KL(...) at T_tf on the rotated images, keeping those the teacher ranks right and the
    `ratio_tf` share of the rest with the best rank of the true class
  + weight_ss * T_ss^2 KL(softmax(S_t/T_ss) || softmax(S_s/T_ss)) over rows, keeping rows whose right answer
    the teacher ranks first and the `ratio_ss` share of the rest with the best rank;
  each KL a mean over the rows kept. The teacher's head gets no gradient here.
The term holds its own cross-entropy (on the unrotated images only), so `kd=sskd` has no separate `ce` term;
other terms added to it see the rotated batch too."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.kd import soft_target_kl

ROTATIONS = 4


def rotate_and_interleave(inputs: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (4B, C, H, W): each image followed by its 90, 180 and 270 degree rotations."""
    return torch.stack([torch.rot90(inputs, k, dims=(2, 3)) for k in range(ROTATIONS)], dim=1).flatten(0, 1)


def projection_head(width: int) -> nn.Module:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))


def rotated_to_unrotated_similarity(projections: torch.Tensor) -> torch.Tensor:
    """(4B, D) interleaved projections -> (3B, B) cosine similarities, rotated rows x unrotated columns."""
    grouped = projections.view(-1, ROTATIONS, projections.shape[1])
    unrotated, rotated = grouped[:, 0], grouped[:, 1:].flatten(0, 1)
    return F.normalize(rotated, dim=1) @ F.normalize(unrotated, dim=1).T


def keep_by_teacher_rank(teacher_scores: torch.Tensor, answers: torch.Tensor, ratio: float) -> torch.Tensor:
    """Rows the teacher gets right (its top score is the answer) and the `ratio` share of the others whose
    answer it ranks best (SSKD's error-level ranking); row indices in ascending order."""
    answer_score = teacher_scores.gather(1, answers[:, None])
    rank = (teacher_scores > answer_score).sum(dim=1)
    wrong = int((rank > 0).sum())
    keep = len(rank) - wrong + int(wrong * ratio)
    return torch.sort(torch.sort(rank, stable=True).indices[:keep]).values


class SSKDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, weight_ce: float = 0.1, weight_kd: float = 0.9, weight_tf: float = 2.7,
                 weight_ss: float = 10.0, temperature_kd: float = 4.0, temperature_tf: float = 4.0,
                 temperature_ss: float = 0.5, ratio_tf: float = 1.0, ratio_ss: float = 0.75,
                 head_phase: str = "teacher_head") -> None:
        super().__init__(weight)
        self.weights = {"ce": float(weight_ce), "kd": float(weight_kd), "tf": float(weight_tf), "ss": float(weight_ss)}
        if any(not value >= 0 for value in self.weights.values()):
            raise ConfigError(f"kd.terms.sskd weights must be >= 0, got {self.weights}; the paper uses "
                              f"weight_ce 0.1, weight_kd 0.9, weight_tf 2.7, weight_ss 10")
        for ratio, key in ((ratio_tf, "ratio_tf"), (ratio_ss, "ratio_ss")):
            if not 0 <= ratio <= 1:
                raise ConfigError(f"kd.terms.sskd.{key} is the share of wrongly ranked rows kept, in [0, 1]; got "
                                  f"{ratio}. The paper uses ratio_tf 1.0, ratio_ss 0.75")
        self.temperature_kd = float(temperature_kd)
        self.temperature_tf = float(temperature_tf)
        self.temperature_ss = float(temperature_ss)
        self.ratio_tf, self.ratio_ss = float(ratio_tf), float(ratio_ss)
        self.head_phase = head_phase
        self.student_taps = self.teacher_taps = ("embedding",)

    def bind_teacher(self, teacher: nn.Module, example_input: torch.Tensor) -> None:
        if example_input.dim() != 4 or example_input.shape[2] != example_input.shape[3]:
            raise ConfigError(f"SSKD rotates its inputs by 90 degrees, so it needs square images; this data gives "
                              f"inputs of shape {tuple(example_input.shape[1:])}. Use an image dataset or another "
                              f"method")

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        for shape, who in ((student_shapes["embedding"], "student"), (teacher_shapes["embedding"], "teacher")):
            if len(shape) != 2:
                raise ConfigError(f"SSKD's projection head reads the {who}'s embedding vector; this model's is "
                                  f"{tuple(shape)}. Declare the model's embedding as the classifier's input")
        self.student_head = projection_head(student_shapes["embedding"][1])
        self.teacher_head = projection_head(teacher_shapes["embedding"][1])

    def expand_batch(self, inputs, targets, indices):
        return (rotate_and_interleave(inputs), targets.repeat_interleave(ROTATIONS),
                indices.repeat_interleave(ROTATIONS))

    def forward(self, batch: DistillBatch):
        teacher_embedding = batch.teacher_features["embedding"].float().detach()
        unrotated_count = len(teacher_embedding) // ROTATIONS
        answers = torch.arange(unrotated_count, device=teacher_embedding.device).repeat_interleave(ROTATIONS - 1)
        if batch.phase == self.head_phase:
            return F.cross_entropy(rotated_to_unrotated_similarity(self.teacher_head(teacher_embedding)), answers)

        grouped = batch.student_logits.float().view(unrotated_count, ROTATIONS, -1)
        teacher_grouped = batch.teacher_logits.float().view(unrotated_count, ROTATIONS, -1)
        student, teacher = grouped[:, 0], teacher_grouped[:, 0]
        student_rotated, teacher_rotated = grouped[:, 1:].flatten(0, 1), teacher_grouped[:, 1:].flatten(0, 1)
        labels = batch.targets.view(unrotated_count, ROTATIONS)[:, 0]
        parts = {"ce": F.cross_entropy(student, labels),
                 "kd": soft_target_kl(student, teacher, self.temperature_kd)}

        kept = keep_by_teacher_rank(teacher_rotated, labels.repeat_interleave(ROTATIONS - 1), self.ratio_tf)
        parts["tf"] = soft_target_kl(student_rotated[kept], teacher_rotated[kept], self.temperature_tf)

        with torch.no_grad():
            teacher_similarity = rotated_to_unrotated_similarity(self.teacher_head(teacher_embedding))
        student_similarity = rotated_to_unrotated_similarity(self.student_head(batch.student_features["embedding"].float()))
        kept = keep_by_teacher_rank(teacher_similarity, answers, self.ratio_ss)
        parts["ss"] = soft_target_kl(student_similarity[kept], teacher_similarity[kept], self.temperature_ss)
        return sum(self.weights[name] * value for name, value in parts.items())

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, parts={self.weights}, T=({self.temperature_kd}, {self.temperature_tf}, "
                f"{self.temperature_ss}), ratios=({self.ratio_tf}, {self.ratio_ss})")
