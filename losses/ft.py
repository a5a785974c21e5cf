"""Factor transfer: Kim et al., "Paraphrasing Complex Network: Network Compression via Factor Transfer",
NeurIPS 2018. A paraphraser (conv auto-encoder on the teacher's last stage, compression rate k) is first
trained to reconstruct the teacher's feature (pre-training phase `paraphraser_phase`: reconstruction MSE);
then a translator on the student's last stage is trained so that its factor matches the paraphraser's
factor: loss = mean |normalise(F_s) - normalise(F_t)|^p with p = 1, factors flattened and L2-normalised.
The paraphraser does not learn outside its pre-training phase."""
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm


def conv_block(in_channels: int, out_channels: int, transposed: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    return [conv(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.LeakyReLU(0.1)]


class FTTerm(DistillTerm):
    def __init__(self, weight: float = 200.0, stage: int = -1, rate: float = 0.5, p: int = 1,
                 paraphraser_phase: str = "paraphraser") -> None:
        super().__init__(weight)
        self.tap = f"stage:{int(stage)}"
        self.student_taps = self.teacher_taps = (self.tap,)
        self.rate, self.p, self.paraphraser_phase = float(rate), int(p), paraphraser_phase

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        for who, shape in (("student", student_shapes[self.tap]), ("teacher", teacher_shapes[self.tap])):
            if len(shape) != 4:
                raise ConfigError(f"FT's paraphraser and translator are 2-d convolutions, but the {who}'s feature "
                                  f"'{self.tap}' has shape {tuple(shape)}; use FT on image models or pick another "
                                  f"method (e.g. kd=rkd)")
        s_c, t_c = student_shapes[self.tap][1], teacher_shapes[self.tap][1]
        factor = int(t_c * self.rate)
        self.encoder = nn.Sequential(*conv_block(t_c, t_c), *conv_block(t_c, factor), *conv_block(factor, factor))
        self.decoder = nn.Sequential(*conv_block(factor, factor, True), *conv_block(factor, t_c, True),
                                     *conv_block(t_c, t_c, True))
        self.translator = nn.Sequential(*conv_block(s_c, s_c), *conv_block(s_c, factor), *conv_block(factor, factor))

    def forward(self, batch: DistillBatch):
        teacher = batch.teacher_features[self.tap].float()
        if batch.phase == self.paraphraser_phase:
            return F.mse_loss(self.decoder(self.encoder(teacher)), teacher)
        self.encoder.eval()  # frozen after its phase: no BatchNorm updates, no gradient
        teacher_factor = self.encoder(teacher).detach()
        student, teacher_factor = self.translator(batch.student_features[self.tap].float()), teacher_factor
        if student.shape[2:] != teacher_factor.shape[2:]:
            student = F.adaptive_avg_pool2d(student, teacher_factor.shape[2:])
        difference = F.normalize(student.flatten(1), dim=1) - F.normalize(teacher_factor.flatten(1), dim=1)
        return difference.abs().pow(self.p).mean()
