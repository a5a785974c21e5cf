"""Mixup, mixup3 and cutmix on the batch: the mixed inputs and soft labels are what the papers define,
reproducible from (seed, step), and the teacher labels the mixed input in a real run."""
import pytest
import torch

from datamodules.mixing import BatchMixing, CutMix, Mixup, Mixup3
from errors import ConfigError
from runs.configs import compose
from runs.training import run_distill
from runs.validation import check_values
from tests.helpers import compose_config, tiny_overrides

B, K = 6, 4
LABELS = torch.tensor([0, 1, 2, 3, 0, 1])


def basis_batch():
    """Example i is the i-th basis vector: a mixed row shows its components and weights directly."""
    return torch.eye(B)


def components(row):
    return {int(i): float(row[i]) for i in row.nonzero().flatten()}


@pytest.mark.parametrize("mixing,count", [(Mixup(alpha=1.0), 2), (Mixup3(alpha=1.0), 3)])
def test_mixup_mixes_inputs_and_labels_with_the_same_weights(mixing, count):
    mixed, soft, _ = mixing(basis_batch(), LABELS, K, seed=0, step=5)
    weights_by_position = None
    for i in range(B):
        parts = components(mixed[i])
        assert sum(parts.values()) == pytest.approx(1.0) and len(parts) <= count
        expected_soft = torch.zeros(K)
        for j, w in parts.items():
            expected_soft[LABELS[j]] += w
        assert torch.allclose(soft[i], expected_soft, atol=1e-6)
        assert parts.get(i, 0) > 0  # each example keeps its own component
        weights_by_position = weights_by_position or sorted(parts.values())
    again, _, _ = mixing(basis_batch(), LABELS, K, seed=0, step=5)
    other, _, _ = mixing(basis_batch(), LABELS, K, seed=0, step=6)
    assert torch.equal(mixed, again) and not torch.equal(mixed, other)


def test_mixup_uses_one_beta_draw_per_batch_and_a_permutation():
    mixed, _, _ = Mixup(alpha=0.5)(basis_batch(), LABELS, K, seed=1, step=0)
    own = mixed.diagonal()
    partner_of = [max((j for j in range(B)), key=lambda j: mixed[i, j] if j != i else -1) for i in range(B)]
    fixed_points = [i for i in range(B) if mixed[i, i] == pytest.approx(1.0)]
    lam = [float(own[i]) for i in range(B) if i not in fixed_points]
    assert all(l == pytest.approx(lam[0]) for l in lam)  # one lambda for the batch
    moved = [partner_of[i] for i in range(B) if i not in fixed_points]
    assert len(set(moved)) == len(moved)  # partners form a permutation


def test_mixup3_weights_come_from_three_normalised_beta_draws():
    mixed, soft, _ = Mixup3(alpha=1.0)(basis_batch(), LABELS, K, seed=2, step=3)
    assert torch.allclose(soft.sum(dim=1), torch.ones(B))
    # the three weights are the same for every row (one draw of three per batch)
    rows = [sorted(components(mixed[i]).values()) for i in range(B) if len(components(mixed[i])) == 3]
    assert rows and all(r == pytest.approx(rows[0]) for r in rows)


def test_cutmix_pastes_one_box_and_labels_by_its_area():
    images = torch.arange(B, dtype=torch.float32).view(B, 1, 1, 1).expand(B, 1, 8, 8).clone()
    for step in range(20):
        mixed, soft, _ = CutMix(alpha=1.0)(images, LABELS, K, seed=0, step=step)
        for i in range(B):
            pasted = mixed[i, 0] != i
            share = float(pasted.float().mean())
            if share:
                rows, cols = pasted.any(dim=1).nonzero().flatten(), pasted.any(dim=0).nonzero().flatten()
                assert int(pasted.sum()) == len(rows) * len(cols)  # a box
                assert len(set(mixed[i, 0][pasted].tolist())) == 1  # from one partner
            partner = int(mixed[i, 0][pasted][0]) if share else i
            expected = torch.zeros(K)
            expected[LABELS[i]] += 1 - share
            expected[LABELS[partner]] += share
            assert torch.allclose(soft[i], expected, atol=1e-6)


def test_bad_mixing_input():
    with pytest.raises(ConfigError, match=r"augment.alpha=0: must be a number > 0 \(Beta"):  # checked with every value
        check_values(compose("distill", ["augment=mixup", "augment.alpha=0"]))
    with pytest.raises(ConfigError, match="token"):
        Mixup()(torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, dtype=torch.long), 2, 0, 0)
    with pytest.raises(ConfigError, match="use augment=mixup"):
        CutMix()(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), 2, 0, 0)
    assert not BatchMixing().active


class TeacherInputs:
    """Wraps a teacher's forward to record what it was asked about."""

    def __init__(self, teacher):
        self.seen, self.forward = [], teacher.forward
        teacher.forward = self

    def __call__(self, x, indices=None):
        if indices is not None:
            self.seen.append(x.detach().clone())
        return self.forward(x, indices)


@pytest.mark.parametrize("augment", ["mixup", "mixup3", "cutmix"])
def test_teacher_labels_the_mixed_input_in_a_run(augment, data_dir, tmp_path, monkeypatch):
    import runs.training as runs
    original, spies = runs.build_teacher, []

    def spying_build_teacher(cfg, datamodule, *args):
        teacher, info = original(cfg, datamodule, *args)
        spies.append(TeacherInputs(teacher))
        return teacher, info
    monkeypatch.setattr(runs, "build_teacher", spying_build_teacher)
    cfg = compose_config("distill", tiny_overrides(data_dir, tmp_path, "~experiment", "student=mlp1d",
                                                   "teacher/model=mlp1d", f"augment={augment}",
                                                   "data.train_subset=64", "data.batch_size=64"))
    record = run_distill(cfg, quiet=True)
    assert record["config"]["augment"]["name"] == augment
    (teacher_input,) = spies[0].seen
    from runs.training import build_datamodule
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    clean = torch.stack([datamodule.train_set[i][0] for i in range(len(datamodule.train_set))])
    # the teacher was asked about mixed rows (a row can stay clean: its partner may be itself)
    assert teacher_input.shape == clean.shape
    mixed_rows = [row for row in teacher_input if not any(torch.equal(row, example) for example in clean)]
    assert len(mixed_rows) >= len(clean) // 2
