"""CTKD (zhengli97/CTKD) against hand computations: with its temperature held, the term is KD at that temperature;
the reversal layer turns the temperature's gradient into lambda times the loss's gradient, lambda following the
anchor's cosine curriculum (computed here by hand); the instance-wise module gives one bounded temperature per
example; a resumed run keeps the learned temperature (tiny mnist1d runs, in process)."""
from __future__ import annotations

import math

import pytest
import torch

from errors import ConfigError
from losses.ctkd import CTKDTerm
from tests.test_logit_losses import kl, make_batch, rows, softmax


def hand_kd(batch, temperature: float) -> float:
    """T^2 * mean over rows of KL(softmax(v/T) || softmax(z/T)), by loops."""
    return temperature ** 2 * sum(kl(softmax(v, temperature), softmax(z, temperature))
                                  for z, v, _ in rows(batch)) / len(batch.targets)


def raw_for(temperature: float, start: float = 1.0, spread: float = 20.0) -> float:
    """The raw parameter whose bounded temperature start + spread * sigmoid(raw) is `temperature`."""
    fraction = (temperature - start) / spread
    return math.log(fraction / (1 - fraction))


def test_the_anchors_initial_temperature_and_range():
    term = CTKDTerm()
    batch = make_batch()
    t = term.temperature(batch.student_logits, batch.teacher_logits, epoch=0)
    assert t.shape == (1,) and t.item() == pytest.approx(1 + 20 / (1 + math.exp(-1)))  # Global_T: torch.ones(1)


@pytest.mark.parametrize("temperature", [4.0, 2.5])
def test_held_temperature_gives_kd_at_that_temperature(temperature):
    term = CTKDTerm()
    with torch.no_grad():
        term.temperature_module.raw.fill_(raw_for(temperature))
    term.temperature_module.requires_grad_(False)  # frozen: the student alone learns
    batch = make_batch(seed=21)
    assert term(batch).item() == pytest.approx(hand_kd(batch, temperature), rel=1e-5)


@pytest.mark.parametrize("epoch,expected_lambda", [
    (0, (math.cos(math.pi / 10) + 1) / 2 - 1),   # anchor epoch 1: -0.0245 (as its logs print)
    (4, -0.5),                                   # anchor epoch 5: cos(pi/2) = 0
    (9, -1.0), (30, -1.0)])                      # from anchor epoch 10 on: full reversal
def test_reversal_scales_the_temperatures_gradient_by_the_curriculum(epoch, expected_lambda):
    temperature = 5.0
    term = CTKDTerm()
    with torch.no_grad():
        term.temperature_module.raw.fill_(raw_for(temperature))
    batch = make_batch(seed=22)
    batch.epoch = epoch
    term(batch).backward()
    # d loss / d T by a central difference of the hand computation, times dT/draw = 20 sigmoid (1 - sigmoid)
    step = 1e-4
    slope = (hand_kd(batch, temperature + step) - hand_kd(batch, temperature - step)) / (2 * step)
    sigmoid = (temperature - 1) / 20
    expected = expected_lambda * slope * 20 * sigmoid * (1 - sigmoid)
    assert term.reversal(epoch) == pytest.approx(expected_lambda, abs=1e-12)
    assert term.temperature_module.raw.grad.item() == pytest.approx(expected, rel=1e-3, abs=1e-7)
    # the student's gradient is KD's at that temperature, unreversed
    reference = make_batch(seed=22)
    held = CTKDTerm()
    with torch.no_grad():
        held.temperature_module.raw.fill_(raw_for(temperature))
    held.temperature_module.requires_grad_(False)
    held(reference).backward()
    torch.testing.assert_close(batch.student_logits.grad, reference.student_logits.grad)


def test_instance_wise_temperatures_are_one_per_example_and_bounded():
    batch = make_batch(batch_size=7, num_classes=5, seed=23)
    term = CTKDTerm(module="instance", hidden=16)
    term.setup({}, {}, num_classes=5, num_train=100)
    t = term.temperature(batch.student_logits, batch.teacher_logits, epoch=3)
    assert t.shape == (7, 1) and bool(((t > 1) & (t < 21)).all()) and len(set(t.flatten().tolist())) > 1
    loss = term(batch)
    assert loss.shape == ()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in term.temperature_module.parameters())


def test_instance_wise_loss_is_the_anchors_per_row_formula():
    """The README's KL_Loss: per row T_i^2 sum_k p (log p - log q), p = softmax(v/T_i) + 1e-7, mean over rows."""
    batch = make_batch(batch_size=4, num_classes=5, seed=24)
    term = CTKDTerm(module="instance", hidden=8)
    term.setup({}, {}, num_classes=5, num_train=10)
    temperatures = term.temperature(batch.student_logits, batch.teacher_logits, epoch=0).flatten().tolist()
    total = 0.0
    for (z, v, _), t in zip(rows(batch), temperatures):
        p = [a + 1e-7 for a in softmax(v, t)]
        log_q = [math.log(b) for b in softmax(z, t)]
        total += t * t * sum(a * (math.log(a) - b) for a, b in zip(p, log_q))
    assert term(batch).item() == pytest.approx(total / 4, rel=1e-5)


def test_instance_wise_with_a_constant_output_is_kd_at_that_temperature():
    batch = make_batch(seed=25)
    term = CTKDTerm(module="instance", hidden=8)
    term.setup({}, {}, num_classes=4, num_train=10)
    last = term.temperature_module.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(raw_for(3.0))
    assert term(batch).item() == pytest.approx(hand_kd(batch, 3.0), rel=1e-4)  # up to the README's +1e-7


def test_bad_options_are_refused():
    for bad, match in [(dict(module="layer"), "global, instance"), (dict(temperature_range=0), "the anchor uses 1, 20"),
                       (dict(lambda_epochs=0), "the anchor uses 0, -1, 10")]:
        with pytest.raises(ConfigError, match=match):
            CTKDTerm(**bad)
