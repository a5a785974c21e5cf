"""Teacher-free KD: Yuan et al., "Revisiting Knowledge Distillation via Label Smoothing Regularization",
CVPR 2020. Tf-KD_reg distills from a hand-made "virtual teacher" that puts `correct_prob` on the label and
spreads the rest uniformly; as in the authors' released code, that distribution is softened as
softmax(virtual / T) and matched by the student's softmax at temperature 1, with the KL averaged over all
B*K entries (PyTorch's element-wise 'mean') and scaled by `multiplier`:
    multiplier * (1 / (B K)) sum_i KL(softmax(u_i / T) || softmax(z_i)),  u = the virtual distribution.
This follows `loss_kd_regularization` in the authors' repository (yuanli2333/Teacher-free-Knowledge-
Distillation, my_loss_function.py) rather than a T^2 KL(u || softmax(z / T)) reading of the paper, because
its defaults (T 20, multiplier 100, alpha 0.1) were tuned for exactly this form.
(Tf-KD_self - a pretrained copy of the student as teacher - is plain KD: see cfg/kd/tfkd_self.yaml.)"""
import torch.nn.functional as F

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm


class TfKDRegTerm(DistillTerm):
    def __init__(self, weight: float = 1.0, temperature: float = 20.0, correct_prob: float = 0.99,
                 multiplier: float = 100.0) -> None:
        super().__init__(weight)
        if not 0 < correct_prob <= 1:
            raise ConfigError(f"kd.terms.tfkd_reg.correct_prob must lie in (0, 1], got {correct_prob}; "
                              f"the paper uses 0.99")
        if not multiplier > 0:
            raise ConfigError(f"kd.terms.tfkd_reg.multiplier must be > 0, got {multiplier}; "
                              f"the authors' code uses 100 for ResNet-18 on CIFAR-100")
        self.temperature = float(temperature)
        self.correct_prob, self.multiplier = float(correct_prob), float(multiplier)

    def forward(self, batch: DistillBatch):
        logits = batch.student_logits.float()
        classes = logits.shape[1]
        if classes < 2:
            raise ConfigError("Tf-KD_reg spreads 1 - correct_prob over the other classes, so it needs >= 2 classes")
        label = F.one_hot(batch.targets, classes).float()
        virtual = label * self.correct_prob + (1 - label) * (1 - self.correct_prob) / (classes - 1)
        soft_virtual = (virtual / self.temperature).softmax(dim=1)
        kl = F.kl_div(logits.log_softmax(dim=1), soft_virtual, reduction="none")
        return self.multiplier * kl.mean()
