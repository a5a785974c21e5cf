"""The strong augmented view of an image as MLKD's anchor makes it: FixMatch's RandAugment after the crop and flip.

Jin-Ying/Multi-Level-Logit-Distillation mdistiller/dataset/cifar100.py (`RandAugment(2, 10)` in
`get_cifar100_train_transform_strong`, the same in imagenet.py): two operations drawn with replacement from 14, each
at a magnitude drawn uniformly from its range (the `m` argument is unused there), then Cutout of a square whose side
is a uniform fraction in [0, 0.5] of the width, filled with (125, 123, 114). The anchor calls PIL on one image; here
the same operations are written once on a uint8 batch (N, C, H, W) with per-image draws, so a DataLoader worker (a
batch of one) and device-resident data (a whole batch on the GPU) run the same code. Each operation follows PIL's
arithmetic (its rounding, its nearest-neighbour sampling at pixel centres, black outside the image);
tests/test_views.py checks them against PIL. Every draw comes from the torch generator passed in (the global one
for a DataLoader's image: `datamodules.views.seeded_transform` makes it a function of (seed, epoch, example)).

Kept from the anchor: the magnitude ranges as its `augment_list` gives them (brightness, colour, contrast and
sharpness only in [0.05, 0.95], i.e. never enhancing; posterize's int() makes 4 to 7 bits); Cutout's corner drawn by
`np.random.uniform(w)`, which is uniform on [1, w] (numpy's low=w, high=1), not [0, w); the rectangle drawn with
PIL's inclusive integer corners.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from errors import ConfigError

# The anchor's augment_list(): name -> magnitude range (None: the operation takes none).
OPERATIONS: dict[str, tuple[float, float] | None] = {
    "autocontrast": None, "brightness": (0.05, 0.95), "color": (0.05, 0.95), "contrast": (0.05, 0.95),
    "equalize": None, "identity": None, "posterize": (4.0, 8.0), "rotate": (-30.0, 30.0),
    "sharpness": (0.05, 0.95), "shear_x": (-0.3, 0.3), "shear_y": (-0.3, 0.3), "solarize": (0.0, 256.0),
    "translate_x": (-0.3, 0.3), "translate_y": (-0.3, 0.3)}
NAMES = tuple(OPERATIONS)
CUTOUT_MAX = 0.5                 # RandAugment.__call__: cutout_val = random.random() * 0.5
CUTOUT_FILL = (125, 123, 114)    # CutoutAbs's colour
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def _grey(x: torch.Tensor) -> torch.Tensor:
    """PIL's convert("L") of a float batch of 0..255 RGB values: (19595 R + 38470 G + 7471 B + 2^15) >> 16."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    return torch.floor((19595 * r + 38470 * g + 7471 * b + 32768) / 65536).unsqueeze(1)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Image.blend(degenerate, x, factor) (ImageEnhance): truncated to 0..255."""
    return (degenerate + factor.view(-1, 1, 1, 1) * (x - degenerate)).floor().clamp(0, 255)


def _smooth(x: torch.Tensor) -> torch.Tensor:
    """PIL's ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1 over 13, rounded), border pixels kept."""
    kernel = torch.ones(3, 3, dtype=x.dtype, device=x.device)
    kernel[1, 1] = 5
    channels = x.shape[1]
    inner = F.conv2d(x, (kernel / 13).expand(channels, 1, 3, 3), groups=channels)
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = torch.floor(inner + 0.5).clamp(0, 255)
    return out


def _inverse_affine(names: torch.Tensor, magnitudes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(N, 2, 3): for each image the map from an output pixel centre (x + 0.5, y + 0.5) to the input point PIL
    samples (Image.rotate about the centre, Image.transform AFFINE for shear and translate); identity for images
    whose operation is not geometric."""
    n = len(names)
    matrix = torch.zeros(n, 2, 3, dtype=torch.float64, device=magnitudes.device)
    matrix[:, 0, 0] = matrix[:, 1, 1] = 1.0
    v = magnitudes.to(torch.float64)
    pick = {name: names == NAMES.index(name) for name in GEOMETRIC}
    angle = -torch.deg2rad(v)                                   # Image.rotate: angle = -radians(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    cx, cy = width / 2.0, height / 2.0
    rotation = torch.stack([torch.stack([cos, sin, cx - cos * cx - sin * cy], -1),
                            torch.stack([-sin, cos, cy + sin * cx - cos * cy], -1)], 1)
    matrix = torch.where(pick["rotate"].view(-1, 1, 1), rotation, matrix)
    matrix[:, 0, 1] = torch.where(pick["shear_x"], v, matrix[:, 0, 1])           # (1, v, 0, 0, 1, 0)
    matrix[:, 1, 0] = torch.where(pick["shear_y"], v, matrix[:, 1, 0])           # (1, 0, 0, v, 1, 0)
    matrix[:, 0, 2] = torch.where(pick["translate_x"], v * width, matrix[:, 0, 2])   # v * img.size[0]
    matrix[:, 1, 2] = torch.where(pick["translate_y"], v * height, matrix[:, 1, 2])  # v * img.size[1]
    return matrix


def _resample(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour sampling at the mapped pixel centres, black outside the image (PIL's NEAREST: the
    integer part of a non-negative coordinate)."""
    n, c, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=torch.float64) + 0.5,
                            torch.arange(w, device=x.device, dtype=torch.float64) + 0.5, indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], 0).view(3, -1)            # (3, H*W)
    source = matrix @ points                                                        # (N, 2, H*W)
    col, row = source[:, 0], source[:, 1]
    inside = (col >= 0) & (row >= 0) & (col < w) & (row < h)
    flat = (row.clamp(0, h - 1).floor() * w + col.clamp(0, w - 1).floor()).long()
    taken = x.reshape(n, c, h * w).gather(2, flat.unsqueeze(1).expand(n, c, h * w))
    return torch.where(inside.unsqueeze(1), taken, torch.zeros_like(taken)).view(n, c, h, w)


def apply_operation(x: torch.Tensor, names: torch.Tensor, magnitudes: torch.Tensor) -> torch.Tensor:
    """Image i of the uint8 batch `x` through operation NAMES[names[i]] at magnitudes[i], as PIL computes it.
    Every operation runs on the whole batch and each image keeps its own: no host synchronisation."""
    values = x.to(torch.float32)
    v = magnitudes.to(torch.float32)
    picked = {name: (names == index).view(-1, 1, 1, 1) for index, name in enumerate(NAMES)}
    grey = _grey(values)
    mean_grey = torch.floor(grey.mean(dim=(1, 2, 3), keepdim=True) + 0.5)  # ImageEnhance.Contrast's int(mean + .5)
    bits = v.floor().clamp(1, 8).to(torch.int64)                             # Posterize: max(1, int(v))
    keep = (255 - (2 ** (8 - bits) - 1)).to(torch.uint8).view(-1, 1, 1, 1)
    results = {
        "autocontrast": TF.autocontrast(x).to(torch.float32),
        "brightness": _blend(torch.zeros_like(values), values, v),
        "color": _blend(grey.expand_as(values), values, v),
        "contrast": _blend(mean_grey.expand_as(values), values, v),
        "equalize": TF.equalize(x).to(torch.float32),
        "posterize": torch.bitwise_and(x, keep).to(torch.float32),
        "sharpness": _blend(_smooth(values), values, v),
        "solarize": torch.where(values >= v.view(-1, 1, 1, 1), 255 - values, values),
    }
    out = _resample(values, _inverse_affine(names, magnitudes, *x.shape[-2:]))  # the geometric ones, or identity
    for name, result in results.items():
        out = torch.where(picked[name], result, out)
    return out.to(torch.uint8)


def cutout(x: torch.Tensor, fractions: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
    """The anchor's Cutout(img, v) for v = fractions[i]: a square of side v * W from corner
    (int(max(0, cx - side / 2)), int(max(0, cy - side / 2))) for the drawn point corners[i] = (cx, cy), both
    ends included as PIL's ImageDraw.rectangle draws them, filled with CUTOUT_FILL; nothing where v is 0."""
    n, c, h, w = x.shape
    side = fractions.to(torch.float64) * w
    x0 = (corners[:, 0].to(torch.float64) - side / 2).clamp(min=0).floor()
    y0 = (corners[:, 1].to(torch.float64) - side / 2).clamp(min=0).floor()
    x1, y1 = torch.minimum(x0 + side, torch.full_like(side, w)).floor(), torch.minimum(y0 + side, torch.full_like(side, h)).floor()
    cols = torch.arange(w, device=x.device, dtype=torch.float64)
    rows = torch.arange(h, device=x.device, dtype=torch.float64)
    inside_cols = (cols >= x0[:, None]) & (cols <= x1[:, None])
    inside_rows = (rows >= y0[:, None]) & (rows <= y1[:, None])
    box = (inside_rows[:, :, None] & inside_cols[:, None, :] & (fractions > 0).view(-1, 1, 1)).unsqueeze(1)
    fill = torch.tensor(CUTOUT_FILL, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
    return torch.where(box, fill, x)


class FixMatchRandAugment(torch.nn.Module):
    """RandAugment as MLKD's anchor (after FixMatch) runs it: `ops` operations with replacement, each at a uniform
    magnitude in its range, then Cutout. On a uint8 image (C, H, W) or batch (N, C, H, W), RGB; draws from
    `generator` (None: torch's global generator, which `seeded_transform` seeds per example)."""

    def __init__(self, ops: int = 2) -> None:
        super().__init__()
        if ops < 1:
            raise ConfigError(f"RandAugment needs at least one operation per image, got {ops}")
        self.ops = int(ops)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        single = x.dim() == 3
        batch = x.unsqueeze(0) if single else x
        if batch.dtype != torch.uint8 or batch.shape[1] != len(CUTOUT_FILL):
            raise ConfigError(f"the strong view's RandAugment works on uint8 RGB images, got {batch.dtype} with "
                              f"{batch.shape[1]} channels")
        n, device = len(batch), batch.device
        names = torch.randint(len(NAMES), (n, self.ops), generator=generator, device=device)
        draws = torch.rand(n, self.ops, generator=generator, device=device, dtype=torch.float64)
        low = torch.tensor([(OPERATIONS[k] or (0.0, 0.0))[0] for k in NAMES], dtype=torch.float64, device=device)
        high = torch.tensor([(OPERATIONS[k] or (0.0, 0.0))[1] for k in NAMES], dtype=torch.float64, device=device)
        magnitudes = low[names] + (high[names] - low[names]) * draws
        fractions = torch.rand(n, generator=generator, device=device, dtype=torch.float64) * CUTOUT_MAX
        # np.random.uniform(w): low=w, high=1.0, so uniform between 1 and the size
        spots = torch.rand(n, 2, generator=generator, device=device, dtype=torch.float64)
        sizes = torch.tensor([batch.shape[-1], batch.shape[-2]], dtype=torch.float64, device=device)
        corners = 1.0 + spots * (sizes - 1.0)
        for step in range(self.ops):
            batch = apply_operation(batch, names[:, step], magnitudes[:, step])
        batch = cutout(batch, fractions, corners)
        return batch[0] if single else batch

    def extra_repr(self) -> str:
        return f"ops={self.ops}"

