"""DOT (mdistiller mdistiller/engine/dot.py) against independent computations: with delta 0 it is SGD with momentum
step for step; with delta != 0 two steps match the anchor's update written out by hand; through a distillation run
(tiny mnist1d, in process) both momentum buffers are saved, and a killed run resumes to the unkilled one's weights,
learned CTKD temperature and optimizer state included."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from errors import ConfigError
from runs.training import run_distill, run_train
from runs.validation import check_config
from tasks.distillation import DistillationTask
from tasks.dot import DistillationOrientedTrainer
from tests.helpers import SimulatedKill, compose_config, tiny_overrides


def dot_step(optimizer, model, task_loss, distillation_loss):
    """One step as the distillation task takes it: the distillation gradient handed over first, then the task's."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer.hold_distillation_gradients(
        params, torch.autograd.grad(distillation_loss, params, retain_graph=True, allow_unused=True))
    optimizer.zero_grad(set_to_none=True)
    task_loss.backward()
    optimizer.step()


def two_losses(model, x, y, teacher):
    logits = model(x)
    task = nn.functional.cross_entropy(logits, y)
    distillation = nn.functional.kl_div(logits.log_softmax(1), teacher.softmax(1), reduction="batchmean")
    return task, distillation


def test_delta_zero_is_sgd_with_momentum_step_by_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    reference = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    reference.load_state_dict(model.state_dict())
    dot = DistillationOrientedTrainer(model.parameters(), lr=0.1, momentum=0.9, delta=0.0, weight_decay=5e-4)
    sgd = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    for step in range(5):
        generator = torch.Generator().manual_seed(step)
        x, y, teacher = torch.randn(8, 5, generator=generator), torch.randint(3, (8,), generator=generator), \
            torch.randn(8, 3, generator=generator)
        dot_step(dot, model, *two_losses(model, x, y, teacher))
        sgd.zero_grad()
        task, distillation = two_losses(reference, x, y, teacher)
        (task + distillation).backward()
        sgd.step()
        for a, b in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_two_steps_with_delta_match_the_anchors_update_by_hand():
    """Three scalars: p has both gradients, q the task's only, r the distillation's only.
    task = (p - 1)^2 / 2 + q^2 / 2, distillation = 3 (p + 2)^2 / 2 + r^2 / 2; lr 0.1, m 0.9, delta 0.05, decay 0.01."""
    lr, m, delta, decay = 0.1, 0.9, 0.05, 0.01
    m_task, m_kd, mean = m - delta, m + delta, ((m + delta) + (m - delta)) / 2
    p, q, r = (nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in (0.5, -2.0, 4.0))
    optimizer = DistillationOrientedTrainer([p, q, r], lr=lr, momentum=m, delta=delta, weight_decay=decay)
    module = nn.Module()
    module.p, module.q, module.r = p, q, r
    hp, hq, hr = 0.5, -2.0, 4.0
    bp = bq = cp = cr = None
    for _ in range(2):
        dot_step(optimizer, module, (p - 1) ** 2 / 2 + q ** 2 / 2, 3 * (p + 2) ** 2 / 2 + r ** 2 / 2)
        # by hand: task gradients (with decay), then distillation gradients
        gp, gq, kp, kr = (hp - 1) + decay * hp, hq + decay * hq, 3 * (hp + 2), hr
        bp = gp if bp is None else m_task * bp + gp        # p has a distillation gradient too: the task momentum
        bq = gq if bq is None else mean * bq + gq          # q has the task's only: the mean momentum
        hp, hq = hp - lr * bp, hq - lr * bq
        cp = kp if cp is None else m_kd * cp + kp          # decay already applied on p's task side
        cr = kr if cr is None else mean * cr + (kr + decay * hr)  # first step: no decay (as the anchor)
        hp, hr = hp - lr * cp, hr - lr * cr
        assert (p.item(), q.item(), r.item()) == pytest.approx((hp, hq, hr), rel=1e-12)
    state = optimizer.state_dict()["state"]
    assert set(state[0]) == {"momentum_buffer", "momentum_kd_buffer"} and set(state[1]) == {"momentum_buffer"}


def test_phase_start_clears_both_buffers():
    model = nn.Linear(3, 2)
    optimizer = DistillationOrientedTrainer(model.parameters(), lr=0.1)
    x = torch.randn(4, 3)
    dot_step(optimizer, model, model(x).pow(2).mean(), model(x).abs().mean())
    assert optimizer.state
    for group in optimizer.param_groups:
        group["main_lr"] = group["lr"]
    DistillationTask.start_optimizer_afresh([optimizer], None)
    assert not optimizer.state


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="momentum \\+ delta < 1"):
        DistillationOrientedTrainer([nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9, delta=0.2)
    with pytest.raises(ConfigError, match="optimizer.task_terms=\\[ce\\]"):
        DistillationOrientedTrainer([nn.Parameter(torch.zeros(1))], lr=0.1, task_terms="ce")


# ----------------------------------------------------------------------------------------------- through a run
@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("outputs")


@pytest.fixture(scope="module")
def teacher(data_dir, outputs) -> str:
    cfg = compose_config("train", tiny_overrides(data_dir, outputs, "model=cnn1d"))
    return run_train(cfg, quiet=True)["checkpoints"]["last"]


def dot_config(data_dir, outputs, teacher, *extra):
    return compose_config("distill", tiny_overrides(data_dir, outputs, "~experiment", "student=mlp1d", "kd=ctkd",
                                                    "optimizer=dot", "optimizer.lr=0.05", "trainer.max_epochs=2",
                                                    f"teacher.checkpoint={teacher}", *extra))


def test_settings_dot_cannot_honour_are_refused_before_training(data_dir, outputs, teacher):
    for extra, match in [("+trainer.accumulate_grad_batches=2", "cannot accumulate"),
                         ("trainer.gradient_clip_val=1.0", "gradient_clip_val=null"),
                         ("trainer.devices=2", "runs on one process"),
                         ("optimizer.delta=-0.1", "optimizer.delta=-0.1: must be a number in \\[0, 1\\)")]:
        with pytest.raises(ConfigError, match=match):
            check_config(dot_config(data_dir, outputs, teacher, extra))
    with pytest.raises(ConfigError, match="optimizer.task_terms names \\['cls'\\]"):
        run_distill(dot_config(data_dir, outputs, teacher, "optimizer.task_terms=[cls]", "run_name=unknown"),
                    quiet=True)


def test_killed_dot_run_with_a_learned_temperature_resumes_to_the_unkilled_one(data_dir, outputs, teacher):
    whole = run_distill(dot_config(data_dir, outputs, teacher, "run_name=whole"), quiet=True)
    kill = ("+callbacks.kill._target_=tests.helpers.KillAtEpoch", "+callbacks.kill.epoch=1")
    with pytest.raises(SimulatedKill):
        run_distill(dot_config(data_dir, outputs, teacher, "run_name=killed", *kill), quiet=True)
    resumed = run_distill(dot_config(data_dir, outputs, teacher, "run_name=killed", "resume=true"), quiet=True)
    assert resumed["resumed_from"] and resumed["epochs"] == 2
    ends = [torch.load(r["checkpoints"]["last"], map_location="cpu", weights_only=False) for r in (whole, resumed)]
    raw = "objective.terms.kd.temperature_module.raw"
    assert ends[0]["state_dict"][raw].item() != pytest.approx(1.0)  # the temperature learned (Global_T starts at 1)
    for key, value in ends[0]["state_dict"].items():
        torch.testing.assert_close(ends[1]["state_dict"][key], value, msg=key)
    states = [e["optimizer_states"][0]["state"] for e in ends]
    assert all("momentum_kd_buffer" in s and "momentum_buffer" in s for s in states[0].values()
               if "momentum_buffer" in s)  # the student's parameters carry both gradients
    temperature_slot = max(states[0])  # the objective's parameters come after the student's: the raw temperature
    assert set(states[0][temperature_slot]) == {"momentum_kd_buffer"}
    for slot, buffers in states[0].items():
        for name, value in buffers.items():
            torch.testing.assert_close(states[1][slot][name], value, msg=f"{slot}.{name}")


def test_no_host_read_in_a_ctkd_and_dot_step(monkeypatch):
    """Neither the learned temperature (its curriculum reads the batch's epoch, a Python int) nor DOT's split step
    reads a device value back: every tensor-to-host conversion raises inside them."""
    from losses.ctkd import CTKDTerm
    from tasks.dot import split_losses
    from tests.test_logit_losses import make_batch
    torch.manual_seed(0)
    student = nn.Linear(6, 4)
    term = CTKDTerm(weight=0.9)
    optimizer = DistillationOrientedTrainer([*student.parameters(), *term.parameters()], lr=0.1, weight_decay=5e-4)
    batch = make_batch(batch_size=5, num_classes=4)
    batch.student_logits = student(torch.randn(5, 6))
    batch.epoch = 3

    def refuse(*args, **kwargs):
        raise AssertionError("a host read in the step")
    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "cpu", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    values = {"ce": nn.functional.cross_entropy(batch.student_logits, batch.targets), "kd": term(batch)}
    task, distillation = split_losses({"ce": 0.1, "kd": 0.9}, values, optimizer.task_terms)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    optimizer.hold_distillation_gradients(
        params, torch.autograd.grad(distillation, params, retain_graph=True, allow_unused=True))
    task.backward()
    optimizer.step()
    monkeypatch.undo()
    assert "momentum_kd_buffer" in optimizer.state[term.temperature_module.raw]
