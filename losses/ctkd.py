"""CTKD: Li et al., AAAI 2023, "Curriculum Temperature for Knowledge Distillation" (anchor: zhengli97/CTKD).

KD (T^2 KL(softmax(v/T) || softmax(z/T)), batch-mean) whose temperature T is learned adversarially: a temperature
module sits behind a gradient reversal layer, so the student descends the KD loss while the module ascends it,
and the curriculum strengthens the reversal from nothing to full over the first epochs (easy to hard).

As the anchor code computes it:
- the global module (models/temp_global.py `Global_T`) is one raw parameter, initialised to 1 (`torch.ones(1)`);
  helper/loops.py bounds it as T = t_start + t_end * sigmoid(raw), with train_student.py's defaults t_start 1 and
  t_end 20: T in (1, 21), starting at 1 + 20 sigmoid(1) = 15.62 (`temperature_start`, `temperature_range`);
- the reversal layer (`GradientReversalFunction`) is the identity forward and multiplies the incoming gradient by
  lambda backward (not by -lambda): the reversal is lambda's sign. train_student.py `CosineDecay(max_value=
  decay_max 0, min_value=decay_min -1, num_loops=decay_loops 10).get_value(epoch)`, epochs counted from 1:
  lambda = min + (max - min) (1 + cos(pi min(e, loops) / loops)) / 2, from 0 towards -1 over the first 10 epochs,
  then -1 (`lambda_max`, `lambda_min`, `lambda_epochs`; scripts/run_cifar_distill.sh passes --cosine_decay 1
  --decay_max 0 --decay_min -1 --decay_loops 10). Lightning counts epochs from 0, hence epoch + 1 here;
- the module is in the student's SGD (train_student.py `trainable_list`): the same lr, momentum and weight decay,
  which reaches the raw parameter too. Here it is a submodule of the term, so of the objective: optimised with
  the student, saved and resumed with its checkpoint;
- distiller_zoo/KD.py `DistillKL`: KLDivLoss(batchmean)(log_softmax(z/T), softmax(v/T)) * T * T; the gradient
  reaches T through both softmaxes and the T^2. The loop weights it with -a (0.9 for CIFAR-100, beside -r 0.1 CE),
  so the temperature's gradient carries the term's weight as here.

lambda is a Python number computed from the batch's epoch: no host synchronisation per step.

Instance-wise variant (`module: instance`): its code is not in the anchor repository (its README links a download
instead). The README gives its loss, used here: per row T_i^2 sum_k p_ik (log p_ik - log q_ik) with
p_i = softmax(v_i / T_i) + 1e-7 and q_i = softmax(z_i / T_i), averaged over rows. The module follows the paper: a
two-layer MLP on the concatenated teacher and student logits, one temperature per example, bounded as above.
Deviations kept, for want of the released code: the hidden width (`hidden`, 256) is ours; the MLP reads detached
logits, so the reversed gradient trains the module only and never reaches the student through it.

`standardize=true` z-scores both sides' logits first (logit standardization, Sun et al., CVPR 2024; the LSKD
anchor's CTKD/distiller_zoo/KD.py `DistillKL_logit_stand`), see losses/standardize.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.standardize import standardize_logits

MODULES = ("global", "instance")
TEACHER_EPS = 1e-7  # the instance-wise loss of the anchor's README: added to the teacher's probabilities


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by `scale` (the anchor's lambda, <= 0 to reverse)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad * ctx.scale, None


def cosine_reversal(epoch: int, lambda_max: float, lambda_min: float, epochs: int) -> float:
    """CTKD's CosineDecay.get_value at the 1-based epoch `epoch`: lambda_max at 0, lambda_min from `epochs` on."""
    step = min(max(epoch, 0), epochs)
    return lambda_min + (lambda_max - lambda_min) * (math.cos(step * math.pi / epochs) + 1.0) / 2.0


class GlobalTemperature(nn.Module):
    """One raw temperature parameter for every example (CTKD models/temp_global.py `Global_T`)."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return self.raw


class InstanceTemperature(nn.Module):
    """One raw temperature per example from a two-layer MLP on the concatenated (detached) teacher and student
    logits (the CTKD paper's instance-wise module; its code is not released in the repository)."""

    def __init__(self, num_classes: int, hidden: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([teacher_logits.detach(), student_logits.detach()], dim=1))  # (B, 1)


class CTKDTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, module: str = "global", temperature_start: float = 1.0,
                 temperature_range: float = 20.0, lambda_max: float = 0.0, lambda_min: float = -1.0,
                 lambda_epochs: int = 10, hidden: int = 256, standardize: bool = False) -> None:
        super().__init__(weight)
        if module not in MODULES:
            raise ConfigError(f"kd.terms.*.module={module!r}: must be one of {', '.join(MODULES)} (CTKD's global or "
                              f"instance-wise temperature); e.g. kd.terms.kd.module=global")
        if not (temperature_start > 0 and temperature_range > 0):
            raise ConfigError(f"CTKD's temperature lies in (temperature_start, temperature_start + temperature_range): "
                              f"both must be > 0 (got {temperature_start}, {temperature_range}); the anchor uses 1, 20")
        if not (lambda_max >= lambda_min and int(lambda_epochs) >= 1 and int(hidden) >= 1):
            raise ConfigError(f"CTKD's curriculum needs lambda_max >= lambda_min and lambda_epochs >= 1, and hidden >= 1 "
                              f"(got {lambda_max}, {lambda_min}, {lambda_epochs}, {hidden}); the anchor uses 0, -1, 10")
        self.module_kind = module
        self.temperature_start, self.temperature_range = float(temperature_start), float(temperature_range)
        self.lambda_max, self.lambda_min, self.lambda_epochs = float(lambda_max), float(lambda_min), int(lambda_epochs)
        self.hidden = int(hidden)
        self.standardize = bool(standardize)
        self.temperature_module = GlobalTemperature() if module == "global" else None  # instance: sized in setup

    def setup(self, student_shapes, teacher_shapes, num_classes: int, num_train: int) -> None:
        if self.module_kind == "instance" and self.temperature_module is None:
            self.temperature_module = InstanceTemperature(num_classes, self.hidden)

    def reversal(self, epoch: int) -> float:
        """lambda in the (0-based) epoch `epoch`."""
        return cosine_reversal(epoch + 1, self.lambda_max, self.lambda_min, self.lambda_epochs)

    def temperature(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, epoch: int) -> torch.Tensor:
        """The learned temperature behind the reversal layer: shape (1,) (global) or (B, 1) (instance)."""
        if self.temperature_module is None:
            raise RuntimeError("the instance-wise CTKD term is used before setup() sized its module")
        raw = GradientReversal.apply(self.temperature_module(student_logits, teacher_logits), self.reversal(epoch))
        return self.temperature_start + self.temperature_range * torch.sigmoid(raw)

    def forward(self, batch: DistillBatch):
        student, teacher = batch.student_logits.float(), batch.teacher_logits.float()
        if self.standardize:
            student, teacher = standardize_logits(student), standardize_logits(teacher)
        t = self.temperature(student, teacher, batch.epoch)
        if self.module_kind == "global":
            t = t.reshape(())
            kl = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher / t, dim=1), reduction="batchmean",
                          log_target=True)
            return kl * t * t
        teacher_probs = F.softmax(teacher / t, dim=1) + TEACHER_EPS
        per_row = (teacher_probs * (teacher_probs.log() - F.log_softmax(student / t, dim=1))).sum(dim=1)
        return (t.squeeze(1) ** 2 * per_row).mean()

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, module={self.module_kind}, temperature in ({self.temperature_start:g}, "
                f"{self.temperature_start + self.temperature_range:g}), lambda {self.lambda_max:g} -> "
                f"{self.lambda_min:g} over {self.lambda_epochs} epochs, standardize={self.standardize}")
