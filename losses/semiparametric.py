"""The semiparametric KD family: Dao, Kamath, Syrgkanis & Mackey, "Knowledge Distillation as Semiparametric
Inference", ICLR 2021. The teacher's probabilities p are a plug-in estimate of the unknown Bayes class
probabilities; these losses correct the distillation target to first order with the label y, so that the
student is less hurt by a teacher that over- or under-fits. Notation: z student logits, v teacher logits,
y one-hot labels, p = softmax(v) optionally smoothed to (1 - s) p + s / K."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.kd_mse import check_scale


def teacher_probabilities(teacher_logits: torch.Tensor, smoothing: float) -> torch.Tensor:
    p = teacher_logits.float().softmax(dim=1)
    return (1 - smoothing) * p + smoothing / p.shape[1] if smoothing else p


def check_eps(eps: float, key: str) -> float:
    eps = float(eps)
    if not 0 <= eps < 1:
        raise ConfigError(f"{key} must lie in [0, 1), got {eps}; the paper's code uses 1e-2 "
                          f"(eps 0 is safe only with smoothing > 0, which keeps p away from 0)")
    return eps


def check_positive(value: float, key: str, usual: float) -> float:
    value = float(value)
    if not value > 0:
        raise ConfigError(f"{key} must be > 0, got {value}; the paper's code uses {usual}")
    return value


def check_unit_interval(value: float, key: str) -> float:
    value = float(value)
    if not 0 <= value < 1:
        raise ConfigError(f"{key} must lie in [0, 1), got {value}")
    return value


class KDOrthoTerm(DistillTerm):
    """KD plus its Neyman-orthogonal correction:
    T^2 [ KL(w || q) + (1/T) ( (sum_k r_k w_k)(sum_k w_k log q_k) - sum_k r_k w_k log q_k ) ], batch mean,
    w = softmax(v/T), q = softmax(z/T), r_k = y_k / max(p_k, eps) - 1. The correction is the directional
    derivative of the tempered cross-entropy in the teacher probabilities along (y - p). The paper's scripts
    pair it with gradient clipping 0.1 (1/p reaches 1/eps): trainer.gradient_clip_val=0.1."""

    def __init__(self, weight: float = 1.0, temperature: float = 4.0, eps: float = 1e-2, smoothing: float = 0.0):
        super().__init__(weight)
        self.temperature = float(temperature)
        self.eps = check_eps(eps, "kd.terms.kd_ortho.eps")
        self.smoothing = check_unit_interval(smoothing, "kd.terms.kd_ortho.smoothing")

    def forward(self, batch: DistillBatch):
        t = self.temperature
        log_q = F.log_softmax(batch.student_logits.float() / t, dim=1)
        log_w = F.log_softmax(batch.teacher_logits.float() / t, dim=1)
        w = log_w.exp()
        p = teacher_probabilities(batch.teacher_logits, self.smoothing)
        y = F.one_hot(batch.targets, p.shape[1]).float()
        r = y / p.clamp_min(self.eps) - 1
        kl = (w * (log_w - log_q)).sum(dim=1)
        correction = (r * w).sum(dim=1) * (w * log_q).sum(dim=1) - (r * w * log_q).sum(dim=1)
        return t * t * (kl + correction / t).mean()


class KDMSEOrthoTerm(DistillTerm):
    """Orthogonal target in log-probability space: mean over entries of (z - [v + y / max(p, eps) - 1])^2."""

    def __init__(self, weight: float = 1.0, eps: float = 1e-2, smoothing: float = 0.0):
        super().__init__(weight)
        self.eps = check_eps(eps, "kd.terms.kd_mse_ortho.eps")
        self.smoothing = check_unit_interval(smoothing, "kd.terms.kd_mse_ortho.smoothing")

    def forward(self, batch: DistillBatch):
        p = teacher_probabilities(batch.teacher_logits, self.smoothing)
        y = F.one_hot(batch.targets, p.shape[1]).float()
        target = batch.teacher_logits.float() + y / p.clamp_min(self.eps) - 1
        return F.mse_loss(batch.student_logits.float(), target)


TINY_PROBABILITY = 1e-20


class KDMSEVarRedTerm(DistillTerm):
    """p-weighted (variance-reduced) version without the eps clamp: mean over entries of
    p (z - v - y / p + 1)^2."""

    def __init__(self, weight: float = 1.0, smoothing: float = 0.0):
        super().__init__(weight)
        self.smoothing = check_unit_interval(smoothing, "kd.terms.kd_mse_varred.smoothing")

    def forward(self, batch: DistillBatch):
        p = teacher_probabilities(batch.teacher_logits, self.smoothing)
        y = F.one_hot(batch.targets, p.shape[1]).float()
        # Expanded p (a - y/p)^2 = p a^2 - 2 y a + y^2 / p with a = z - v + 1: the same value, but a target-class
        # probability that underflows to 0 leaves a large finite constant instead of inf * 0 = nan, and the
        # gradient 2 (p a - y) is exact.
        a = batch.student_logits.float() - batch.teacher_logits.float() + 1
        return (p * a ** 2 - 2 * y * a + y / p.clamp_min(TINY_PROBABILITY)).mean()


GAMMAS = ("one", "var", "bound_fast", "minimax_relerr", "minimax_power", "minimax_abserr")
GAMMA_GRID = (-10.0, 10.0, 0.05)  # the paper code's search grid for the minimax gammas
MINIMAX_POINTS = 10               # candidate true probabilities per entry
# Lower ends of the minimax intervals on the logp scale (kd.py: the relerr and power losses' bound_fn floor
# 1e-6, the abserr loss's 1e-3); on the p scale every floor is 0.
LOGP_FLOORS = {"minimax_relerr": 1e-6, "minimax_power": 1e-6, "minimax_abserr": 1e-3}


class KDMSEGammaTerm(DistillTerm):
    """Regress z on the gamma-corrected target v + gamma (y - p) (`scale: logp`) or p + gamma (y - p)
    (`scale: p`), mean squared error over entries.

    gamma: one = 1; var = 1 - p; bound_fast = c / (max(p, lower) (c + (y - p)^2)) (logp) or c / (c + (y - p)^2)
    (p); minimax_* choose gamma per entry on the grid {-10, -9.95, ..., 9.95} to minimise, over 10 equally
    spaced true probabilities t in an interval around p, the worst case of
    (gamma (t - p) - delta(t))^2 + (1/alpha - 1 + gamma)^2 t (1 - t), with delta(t) = t - p (p) or
    log t - log p (logp), where alpha is the distillation weight of the paper's (1 - alpha) CE + alpha KD;
    intervals: relerr [p / (1 + c), p (1 + c)], power [p, p^(1 / t_max)], abserr [p - c, p + c], each end clipped
    as the paper code's KDMSEMinimax*Loss bound_fn clips it (semiparametric-distillation kd.py): the lower end
    raised to a floor (0 on the p scale; on logp 1e-6 for relerr and power, 1e-3 for abserr), the upper end
    capped at 1 and nothing else."""

    def __init__(self, weight: float = 1.0, gamma: str = "bound_fast", scale: str = "logp", c: float = 1.0,
                 lower: float = 1e-3, alpha: float = 0.5, relerr_c: float = 2.0, power_tmax: float = 2.0,
                 abserr_c: float = 0.05, smoothing: float = 0.0):
        super().__init__(weight)
        if gamma not in GAMMAS:
            raise ConfigError(f"kd.terms.kd_mse_gamma.gamma must be one of {list(GAMMAS)}, got '{gamma}'")
        if not 0 < float(alpha) <= 1:
            raise ConfigError(f"kd.terms.kd_mse_gamma.alpha must lie in (0, 1], got {alpha}")
        self.gamma, self.scale = gamma, check_scale(scale, "kd.terms.kd_mse_gamma.scale")
        key = "kd.terms.kd_mse_gamma"
        self.c, self.lower, self.alpha = check_positive(c, f"{key}.c", 1.0), check_positive(
            lower, f"{key}.lower", 1e-3), float(alpha)
        self.relerr_c = check_positive(relerr_c, f"{key}.relerr_c", 2.0)
        self.abserr_c = check_positive(abserr_c, f"{key}.abserr_c", 0.05)
        self.power_tmax = float(power_tmax)
        if not self.power_tmax >= 1:  # the interval [p, p^(1/t_max)] needs t_max >= 1
            raise ConfigError(f"{key}.power_tmax must be >= 1, got {power_tmax}; the paper's code uses 2.0")
        self.smoothing = check_unit_interval(smoothing, "kd.terms.kd_mse_gamma.smoothing")

    @torch.no_grad()
    def gamma_of(self, p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.gamma == "one":
            return torch.ones_like(p)
        if self.gamma == "var":
            return 1 - p
        if self.gamma == "bound_fast":
            bound = self.c / (self.c + (y - p) ** 2)
            return bound / p.clamp_min(self.lower) if self.scale == "logp" else bound
        return self._minimax(p)

    def _interval(self, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.gamma == "minimax_relerr":
            low, high = p / (1 + self.relerr_c), p * (1 + self.relerr_c)
        elif self.gamma == "minimax_power":
            low, high = p, p ** (1 / self.power_tmax)
        else:
            low, high = p - self.abserr_c, p + self.abserr_c
        floor = LOGP_FLOORS[self.gamma] if self.scale == "logp" else 0.0
        return low.clamp_min(floor), high.clamp_max(1.0)

    def _minimax(self, p: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        flat = p.reshape(-1)
        grid = torch.arange(*GAMMA_GRID, device=p.device, dtype=p.dtype)        # (G,)
        fractions = torch.linspace(0, 1, MINIMAX_POINTS, device=p.device, dtype=p.dtype)
        gammas = []
        for part in flat.split(chunk):
            low, high = self._interval(part)
            t = low[:, None] + (high - low)[:, None] * fractions                 # (N, P)
            pp = part[:, None]
            # (the clamps only guard a probability that underflowed to 0, where the paper code's log gives -inf)
            delta = t - pp if self.scale == "p" else t.clamp_min(1e-12).log() - pp.clamp_min(1e-12).log()
            bias = grid[None, None, :] * (t - pp)[:, :, None] - delta[:, :, None]  # (N, P, G)
            variance = (1 / self.alpha - 1 + grid[None, None, :]) ** 2 * (t * (1 - t))[:, :, None]
            worst = (bias ** 2 + variance).amax(dim=1)                           # (N, G)
            gammas.append(grid[worst.argmin(dim=1)])
        return torch.cat(gammas).reshape(p.shape)

    def forward(self, batch: DistillBatch):
        p = teacher_probabilities(batch.teacher_logits, self.smoothing)
        y = F.one_hot(batch.targets, p.shape[1]).float()
        base = batch.teacher_logits.float() if self.scale == "logp" else p
        target = (base + self.gamma_of(p, y) * (y - p)).detach()
        return F.mse_loss(batch.student_logits.float(), target)
