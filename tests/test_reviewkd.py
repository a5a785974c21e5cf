"""ReviewKD against a hand-written computation of the paper's fusion and hierarchical context loss."""
import pytest
import torch
import torch.nn.functional as F

from errors import ConfigError
from losses import DistillBatch
from losses.reviewkd import ReviewKDTerm


def randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def block_mean(x, size):
    """Average over equal blocks: the l x l pyramid level of an (H x W) map, H and W multiples of l."""
    b, c, h, w = x.shape
    return x.reshape(b, c, size, h // size, size, w // size).mean(dim=(3, 5))


def reference_hcl(s, t):
    """(MSE + 1/2 MSE@4x4 + 1/4 MSE@2x2 + 1/8 MSE@1x1) / (1 + 1/2 + 1/4 + 1/8), skipping levels >= H."""
    total, norm, weight = ((s - t) ** 2).mean(), 1.0, 1.0
    for size in (4, 2, 1):
        if size < s.shape[2]:
            weight /= 2
            total = total + weight * ((block_mean(s, size) - block_mean(t, size)) ** 2).mean()
            norm += weight
    return total / norm


def conv_bn(x, sequential, padding=0):
    conv, bn = sequential
    y = F.conv2d(x, conv.weight, padding=padding)
    mean, var = y.mean(dim=(0, 2, 3), keepdim=True), y.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    return (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)


def nearest(x, size):
    """Nearest resize by an integer factor, up (repeat) or down (stride)."""
    h = x.shape[2]
    if size >= h:
        return x.repeat_interleave(size // h, dim=2).repeat_interleave(size // h, dim=3)
    return x[:, :, ::h // size, ::h // size]


def test_hierarchical_context_loss_and_fusion_match_the_paper():
    batch = 3
    # student: stage 1 (4 ch, 8x8), stage 2 (6 ch, 4x4), embedding 5; teacher: 3 ch at 4x4, 7 ch at 4x4, 9
    student = {"stage:1": randn(batch, 4, 8, 8, seed=1).requires_grad_(),
               "stage:2": randn(batch, 6, 4, 4, seed=2).requires_grad_(),
               "embedding": randn(batch, 5, seed=3).requires_grad_()}
    teacher = {"preact:1": randn(batch, 3, 4, 4, seed=4), "preact:2": randn(batch, 7, 4, 4, seed=5),
               "embedding": randn(batch, 9, seed=6)}
    term = ReviewKDTerm(stages=[1, 2], warmup_epochs=4)
    assert term.student_taps == ("stage:1", "stage:2", "embedding")
    assert term.teacher_taps == ("preact:1", "preact:2", "embedding")
    torch.manual_seed(0)
    term.setup({k: v.shape for k, v in student.items()}, {k: v.shape for k, v in teacher.items()}, 10, 100)
    for parameter in term.parameters():  # non-trivial BN affine and attention bias
        parameter.data.add_(0.1 * randn(*parameter.shape, seed=parameter.numel()))
    values = {}
    for epoch in (0, 5):
        value = term(DistillBatch(inputs=torch.zeros(batch), targets=torch.zeros(batch, dtype=torch.long),
                                  indices=torch.arange(batch), student_logits=torch.zeros(batch, 10),
                                  teacher_logits=torch.zeros(batch, 10), student_features=student,
                                  teacher_features=teacher, epoch=epoch))
        values[epoch] = value

    with torch.no_grad():
        deep, middle, shallow = term.fusions[2], term.fusions[1], term.fusions[0]
        assert deep.attention is None and middle.attention is not None and shallow.attention is not None
        mid = deep.reduce[0].out_channels
        assert mid == 5  # min(512, student embedding width)
        # deepest level: the embedding as a 1x1 map, no fusion, output at the teacher's 1x1
        x = conv_bn(student["embedding"].view(batch, 5, 1, 1), deep.reduce)
        out_deep, residual = conv_bn(x, deep.project, padding=1), x
        # stage 2: fuse with the residual upsampled to 4x4
        x = conv_bn(student["stage:2"], middle.reduce)
        r = nearest(residual, 4)
        gate = torch.sigmoid(F.conv2d(torch.cat([x, r], 1), middle.attention[0].weight, middle.attention[0].bias))
        x = x * gate[:, 0:1] + r * gate[:, 1:2]
        out_middle, residual = conv_bn(x, middle.project, padding=1), x
        # stage 1: student map 8x8, fused, then resized down to the teacher's 4x4 before the projection
        x = conv_bn(student["stage:1"], shallow.reduce)
        r = nearest(residual, 8)
        gate = torch.sigmoid(F.conv2d(torch.cat([x, r], 1), shallow.attention[0].weight, shallow.attention[0].bias))
        x = nearest(x * gate[:, 0:1] + r * gate[:, 1:2], 4)
        out_shallow = conv_bn(x, shallow.project, padding=1)
        expected = (reference_hcl(out_shallow, teacher["preact:1"]) + reference_hcl(out_middle, teacher["preact:2"])
                    + ((out_deep.flatten(1) - teacher["embedding"]) ** 2).mean())
    assert values[0].item() == pytest.approx(expected.item() / 4, rel=1e-4)   # warm-up: 1/4 in the first epoch
    assert values[5].item() == pytest.approx(expected.item(), rel=1e-4)       # full weight after it
    values[5].backward()
    assert all(feature.grad is not None and feature.grad.abs().sum() > 0 for feature in student.values())
    assert all(p.grad is not None for p in term.parameters())


def test_reviewkd_refuses_vector_stages():
    term = ReviewKDTerm(stages=[-1])
    with pytest.raises(ConfigError, match="ReviewKD fuses 1-d or 2-d feature maps"):
        term.setup({"stage:-1": torch.Size([2, 8]), "embedding": torch.Size([2, 8])},
                   {"preact:-1": torch.Size([2, 8]), "embedding": torch.Size([2, 8])}, 10, 100)
    with pytest.raises(ConfigError, match="warmup_epochs must be >= 0"):
        ReviewKDTerm(warmup_epochs=-1)
