"""TTM and WTTM: Zheng and Yang, "Knowledge Distillation Based on Transformed Teacher Matching", ICLR 2024.

TTM drops the temperature on the student's side: the student's softmax at T = 1 matches the teacher's softmax
raised to the power gamma (= 1/T) and renormalised, the "power-transformed" teacher
    q_k = p_k^gamma / sum_j p_j^gamma,    p = softmax(v),
    TTM  = mean_i KL(q_i || softmax(z_i)),
summed over classes and averaged over the batch, with no T^2 factor. WTTM weights each example by the power sum
that normalised its teacher, sum_j p_j^gamma (larger for a smoother teacher; a monotone function of the teacher's
Renyi entropy of order gamma), and averages over the batch:
    WTTM = mean_i (sum_j p_ij^gamma) KL(q_i || softmax(z_i)).
As the anchor computes them: zkxufo/TTM distiller_zoo/ttm.py (TTM) and distiller_zoo/wttm.py (WTTM), selected by
train_student.py `--distill ttm|wttm` with `--ttm_l` the exponent gamma and `-b` the term's weight (`-r` the CE
weight, 1). The anchor's weight is not detached: it is built from the teacher, which never receives a gradient.

Limiting cases: at gamma 1 (T = 1) the transformed teacher is the teacher's softmax and TTM is KD at T 1 (the
paper's stated reduction, Hinton KD at temperature 1); WTTM at gamma 1 weighs every example by sum_j p_j = 1 and
is TTM; a weight equal for every example makes WTTM that constant times TTM."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from losses.base import DistillBatch, DistillTerm


def transformed_teacher(teacher_logits: torch.Tensor, exponent: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(log of the power-transformed teacher q = p^gamma / sum p^gamma, the power sum sum_j p_j^gamma) per row.
    In log space: gamma * log p, normalised by its logsumexp, so a tiny p raised to gamma never underflows."""
    scaled = exponent * F.log_softmax(teacher_logits.float(), dim=1)
    log_power_sum = torch.logsumexp(scaled, dim=1, keepdim=True)
    return scaled - log_power_sum, log_power_sum.squeeze(1).exp()


class TTMTerm(DistillTerm):
    """`exponent` is the anchor's `--ttm_l` (the paper's gamma = 1/T); `sample_weighted` true is WTTM."""

    def __init__(self, weight: float = 1.0, exponent: float = 0.1, sample_weighted: bool = False) -> None:
        super().__init__(weight)
        # runs/validation.py checks exponent > 0 and sample_weighted a boolean before any run
        self.exponent, self.sample_weighted = float(exponent), bool(sample_weighted)

    def forward(self, batch: DistillBatch) -> torch.Tensor:
        log_q, power_sum = transformed_teacher(batch.teacher_logits, self.exponent)
        log_student = F.log_softmax(batch.student_logits.float(), dim=1)
        kl = (log_q.exp() * (log_q - log_student)).sum(dim=1)
        return (power_sum * kl).mean() if self.sample_weighted else kl.mean()

    def extra_repr(self) -> str:
        return f"weight={self.weight}, exponent={self.exponent}, sample_weighted={self.sample_weighted}"
