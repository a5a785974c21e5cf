"""Factor transfer: Kim et al., "Paraphrasing Complex Network: Network Compression via Factor Transfer",
NeurIPS 2018. A paraphraser (conv auto-encoder on the teacher's last stage, compression rate k) is first
trained to reconstruct the teacher's feature (pre-training phase `paraphraser_phase`: reconstruction MSE);
then a translator on the student's last stage is trained so that its factor matches the paraphraser's.
Each module is three 3x3 convolutions (with bias), each followed by an optional BatchNorm and LeakyReLU(0.1).
Where the two factor maps differ in size, the larger is average-pooled to the smaller. Two forms:

- `form: channel_mean` (default; RepDistiller distiller_zoo/FT.py, whose published numbers and beta 200 come
  from it): each factor is reduced to an H*W map, the channel mean of factor^`factor_power` (p1 = 2), flattened
  and L2-normalised; loss = mean |a_s - a_t|^p (p2 = 1).
- `form: full` (the paper's, and torchdistill's FTLoss): the whole factor, flattened and L2-normalised;
  loss = mean |normalise(F_s) - normalise(F_t)|^p.

BatchNorm: RepDistiller builds the paraphraser without it and the translator with it (models/util.py
Paraphraser use_bn=False, Translator use_bn=True as train_student.py builds them); torchdistill's rrpr2020
FT config uses neither (`uses_bn: False`). The paraphraser does not learn outside its pre-training phase."""
import torch
import torch.nn.functional as F
from torch import nn

from errors import ConfigError
from losses.base import DistillBatch, DistillTerm
from losses.feature_utils import match_spatial

FORMS = ("channel_mean", "full")


def conv_block(in_channels: int, out_channels: int, batchnorm: bool, transposed: bool = False) -> list[nn.Module]:
    conv = nn.ConvTranspose2d if transposed else nn.Conv2d
    norm = [nn.BatchNorm2d(out_channels)] if batchnorm else []
    return [conv(in_channels, out_channels, 3, padding=1), *norm, nn.LeakyReLU(0.1)]


def three_convs(channels: tuple[int, int, int, int], batchnorm: bool, transposed: bool = False) -> nn.Sequential:
    return nn.Sequential(*[layer for i in range(3)
                           for layer in conv_block(channels[i], channels[i + 1], batchnorm, transposed)])


class FTTerm(DistillTerm):
    def __init__(self, weight: float = 200.0, stage: int = -1, rate: float = 0.5, p: int = 1,
                 form: str = "channel_mean", factor_power: int = 2, paraphraser_batchnorm: bool = False,
                 translator_batchnorm: bool = True, paraphraser_phase: str = "paraphraser") -> None:
        super().__init__(weight)
        if form not in FORMS:
            raise ConfigError(f"kd.terms.ft.form must be one of {list(FORMS)}, got {form!r}; use channel_mean "
                              f"(RepDistiller's FT.py) or full (the paper's and torchdistill's)")
        self.tap = f"stage:{int(stage)}"
        self.student_taps = self.teacher_taps = (self.tap,)
        self.rate, self.p, self.form, self.factor_power = float(rate), int(p), form, int(factor_power)
        self.paraphraser_batchnorm, self.translator_batchnorm = bool(paraphraser_batchnorm), bool(translator_batchnorm)
        self.paraphraser_phase = paraphraser_phase

    def setup(self, student_shapes, teacher_shapes, num_classes, num_train) -> None:
        for who, shape in (("student", student_shapes[self.tap]), ("teacher", teacher_shapes[self.tap])):
            if len(shape) != 4:
                raise ConfigError(f"FT's paraphraser and translator are 2-d convolutions, but the {who}'s feature "
                                  f"'{self.tap}' has shape {tuple(shape)}; use FT on image models or pick another "
                                  f"method (e.g. kd=rkd)")
        s_c, t_c = student_shapes[self.tap][1], teacher_shapes[self.tap][1]
        factor = int(t_c * self.rate)
        self.encoder = three_convs((t_c, t_c, factor, factor), self.paraphraser_batchnorm)
        self.decoder = three_convs((factor, factor, t_c, t_c), self.paraphraser_batchnorm, transposed=True)
        self.translator = three_convs((s_c, s_c, factor, factor), self.translator_batchnorm)

    def factor_vector(self, factor: torch.Tensor) -> torch.Tensor:
        if self.form == "channel_mean":
            factor = factor.pow(self.factor_power).mean(dim=1)
        return F.normalize(factor.flatten(1), dim=1)

    def forward(self, batch: DistillBatch):
        teacher = batch.teacher_features[self.tap].float()
        if batch.phase == self.paraphraser_phase:
            return F.mse_loss(self.decoder(self.encoder(teacher)), teacher)
        self.encoder.eval()  # frozen after its phase: no BatchNorm updates, no gradient
        teacher_factor = self.encoder(teacher).detach()
        student_factor = self.translator(batch.student_features[self.tap].float())
        student_factor, teacher_factor = match_spatial(student_factor, teacher_factor)
        difference = self.factor_vector(student_factor) - self.factor_vector(teacher_factor)
        return difference.abs().pow(self.p).mean()

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, tap={self.tap}, form={self.form}, p={self.p}, "
                f"paraphraser_batchnorm={self.paraphraser_batchnorm}, translator_batchnorm={self.translator_batchnorm}")
