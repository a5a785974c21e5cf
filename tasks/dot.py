"""DOT, the distillation-oriented trainer (Zhao et al., ICCV 2023; anchor: megvii-research/mdistiller
mdistiller/engine/dot.py `DistillationOrientedTrainer` and engine/trainer.py `DOT`): SGD with separate momentum
buffers for the task loss's gradient and the distillation loss's gradient, the distillation one kept longer.

With the configured momentum m and delta d, the task momentum is m - d and the distillation momentum m + d
(trainer.py `init_optimizer`). Per parameter, as dot.py's `dot` computes it (dampening 0):
- task gradient g (the parameter has one): g' = g + weight_decay * p; the task buffer starts as g' and then is
  b <- mu * b + g', with mu = m - d if the parameter also has a distillation gradient, else the mean of the two
  momenta (= m); p <- p - lr * b;
- distillation gradient k: its buffer starts as k and then is c <- (m + d) * c + k if the parameter also has a task
  gradient (weight decay was applied there once), else c <- mean * c + (k + weight_decay * p); p <- p - lr * c.
  As in the anchor, a parameter with a distillation gradient only gets no weight decay in its first step.
The anchor back-propagates the distillation loss first (retain_graph) and the task loss second; so does the
distillation task here (tasks/distillation.py `loss_to_backward`): it hands this optimizer the distillation terms'
gradient, then Lightning back-propagates the task terms' sum as usual. Which terms are the task is
`task_terms` (cross-entropy, `ce`, by default: mdistiller's loss_ce); every other weighted term is distillation.
A step whose terms are all of one kind (a teacher's training, a pre-training phase of connector terms) leaves only
one gradient, and DOT is then SGD with momentum m. With delta 0 DOT is SGD with momentum m throughout.

Both buffers live in the optimizer's state (`momentum_buffer`, `momentum_kd_buffer`), so a checkpoint saves them and
a resumed run continues them. Nothing here reads a device value back to the host.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import torch

from errors import ConfigError


class DistillationOrientedTrainer(torch.optim.Optimizer):
    def __init__(self, params, lr: float, momentum: float = 0.9, delta: float = 0.075, weight_decay: float = 0.0,
                 task_terms: Sequence[str] = ("ce",)) -> None:
        if not (0 <= delta <= momentum and momentum + delta < 1):
            raise ConfigError(f"optimizer=dot needs 0 <= delta <= momentum and momentum + delta < 1 (task momentum "
                              f"momentum - delta, distillation momentum momentum + delta); got momentum {momentum}, "
                              f"delta {delta}; mdistiller uses momentum 0.9, delta 0.075 (CIFAR-100), 0.09 (ImageNet)")
        if isinstance(task_terms, str) or not task_terms or not all(isinstance(t, str) and t for t in task_terms):
            raise ConfigError(f"optimizer.task_terms={task_terms!r}: must be a list of kd.terms names whose gradient "
                              f"is the task's; e.g. optimizer.task_terms=[ce]")
        super().__init__(params, dict(lr=lr, momentum=momentum, delta=delta, weight_decay=weight_decay))
        self.task_terms = tuple(task_terms)
        self._distillation_gradients: dict[torch.Tensor, torch.Tensor] = {}

    def hold_distillation_gradients(self, params: Iterable[torch.Tensor], grads: Iterable[torch.Tensor | None]) -> None:
        """The distillation loss's gradient of each parameter (None: it has none), for the next `step` only."""
        self._distillation_gradients = {p: g for p, g in zip(params, grads) if g is not None}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()  # the training step: holds the distillation gradient, back-propagates the task loss
        held, self._distillation_gradients = self._distillation_gradients, {}
        for group in self.param_groups:
            lr, decay = group["lr"], group["weight_decay"]
            task_momentum, kd_momentum = group["momentum"] - group["delta"], group["momentum"] + group["delta"]
            mean_momentum = (kd_momentum + task_momentum) / 2.0
            for p in group["params"]:
                task, kd = p.grad, held.get(p)
                state = self.state[p]
                if task is not None:
                    task = task.add(p, alpha=decay) if decay else task
                    buffer = state.get("momentum_buffer")
                    if buffer is None:
                        buffer = state["momentum_buffer"] = task.clone()
                    else:
                        buffer.mul_(task_momentum if kd is not None else mean_momentum).add_(task)
                    p.add_(buffer, alpha=-lr)
                if kd is not None:
                    buffer = state.get("momentum_kd_buffer")
                    if buffer is None:
                        buffer = state["momentum_kd_buffer"] = kd.clone()
                    elif task is not None:
                        buffer.mul_(kd_momentum).add_(kd)
                    else:
                        buffer.mul_(mean_momentum).add_(kd.add(p, alpha=decay) if decay else kd)
                    p.add_(buffer, alpha=-lr)
        return loss


def takes_split_gradients(optimizer) -> bool:
    """Whether `optimizer` wants the distillation gradient apart from the task's (DOT, or another optimizer with
    `task_terms` and `hold_distillation_gradients`: docs/extending.md)."""
    return hasattr(optimizer, "task_terms") and hasattr(optimizer, "hold_distillation_gradients")


def split_losses(weights: dict[str, float], values: dict[str, torch.Tensor], task_terms: Sequence[str]):
    """(task loss, distillation loss): the weighted sums of the step's task terms and of its other terms; None
    for a group with no term in this step."""
    def weighted(names):
        return sum(weights[n] * values[n] for n in names) if names else None
    return (weighted([n for n in weights if n in task_terms]), weighted([n for n in weights if n not in task_terms]))


def refuse_unsupported_trainer(trainer_cfg) -> None:
    """Trainer settings DOT's two gradients cannot honour, refused before training (runs/validation.py)."""
    if int(trainer_cfg.get("accumulate_grad_batches") or 1) > 1:
        raise ConfigError("optimizer=dot holds one batch's distillation gradient per step, so it cannot accumulate "
                          "batches; use trainer.accumulate_grad_batches=1 (or a larger data.batch_size)")
    devices, nodes = trainer_cfg.get("devices"), int(trainer_cfg.get("num_nodes") or 1)
    if nodes > 1 or (isinstance(devices, int) and devices > 1) or (not isinstance(devices, (int, str)) and
                                                                     devices is not None and len(devices) > 1):
        raise ConfigError("optimizer=dot computes the distillation gradient apart from DDP's synchronised backward, "
                          "so it runs on one process (as mdistiller's DataParallel does); use trainer.devices=1")
    if trainer_cfg.get("gradient_clip_val"):
        raise ConfigError("optimizer=dot keeps the distillation gradient apart from the one Lightning clips; use "
                          "trainer.gradient_clip_val=null with it")
    if str(trainer_cfg.get("precision")) in ("16-mixed", "16"):
        raise ConfigError(f"optimizer=dot with trainer.precision={trainer_cfg.get('precision')}: fp16's loss scaling "
                          "would scale only the task gradient; use trainer.precision=bf16-mixed or 32-true")
