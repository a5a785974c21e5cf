"""Training batches a distillation term makes its own (losses.base.TupleBatches, ClassGroupedBatches): the batch
samplers of comparative KD's relational methods (alextxu/ckd dataset/sampling/).

Both yield `steps` batches per epoch, CKD's validation period: ceil(training examples / data.batch_size) steps
(train_student.py `eval_every`), however long the anchor's own loader pass is. Draws are a pure function of
(seed, epoch), so a resumed run replays them. A batch's rows are training-set positions, encoded for the
training dataset: a cached teacher's fixed views (position * views + a drawn view), or (position, draw) so a
random training transform draws afresh on every row (the anchors apply it at every access), or the position.
"""
from __future__ import annotations

import itertools
import math
from typing import Iterator

import numpy as np
from torch.utils.data import Sampler

from errors import ConfigError

# CKDSample enumerates every tuple when fewer than this many times the pool size exist, else draws at random.
ENUMERATE_BELOW = 5


def tuple_pool(count: int, positives: int, negatives: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    """(P, positives + negatives) positions in [0, count): CKDSample's pool. A tuple is a set of positives and
    a disjoint set of negatives (each sorted); the pool is every such tuple when there are at most `limit`,
    else `limit` distinct ones drawn uniformly (by enumeration when fewer than 5 x limit exist, as CKDSample
    does, else by rejection)."""
    size = positives + negatives
    if count < size:
        raise ConfigError(f"tuples of {size} distinct examples need at least {size} training examples, got {count}; "
                          f"raise teacher.budget or lower kd.terms.ckd.pos_and_neg")
    total = math.comb(count, positives) * math.comb(count - positives, negatives)
    if total < ENUMERATE_BELOW * limit:
        pool = np.array([list(chosen) + [i for i in combo if i not in chosen]
                         for combo in itertools.combinations(range(count), size)
                         for chosen in itertools.combinations(combo, positives)], dtype=np.int64)
        return pool if len(pool) <= limit else pool[rng.choice(len(pool), limit, replace=False)]
    found = np.empty((0, size), dtype=np.int64)
    while len(found) < limit:
        draws = rng.integers(count, size=(2 * (limit - len(found)) + 16, size))
        ordered = np.sort(draws, axis=1)
        draws = draws[(ordered[:, 1:] != ordered[:, :-1]).all(axis=1)]  # distinct members only
        draws = np.concatenate([np.sort(draws[:, :positives], axis=1), np.sort(draws[:, positives:], axis=1)], axis=1)
        found = np.unique(np.concatenate([found, draws]), axis=0)
    return found[rng.choice(len(found), limit, replace=False)]


class TermBatchSampler(Sampler[list]):
    """Shared part: the epoch, the step count, the draws and how a row's position reaches the dataset."""

    def __init__(self, count: int, batch_size: int, seed: int, views: int, fresh_draws: bool) -> None:
        self.count, self.batch_size, self.seed = int(count), int(batch_size), int(seed)
        self.views, self.fresh_draws, self.epoch = int(views), bool(fresh_draws), 0
        self.steps = math.ceil(self.count / self.batch_size)
        self.sampler = self  # Lightning sets the epoch on `batch_sampler.sampler`


    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def encode(self, positions: np.ndarray, rng: np.random.Generator) -> list:
        if self.views > 1:
            return (positions * self.views + rng.integers(self.views, size=len(positions))).tolist()
        if self.fresh_draws:
            return list(zip(positions.tolist(), rng.integers(1 << 62, size=len(positions)).tolist()))
        return positions.tolist()

    def batch(self, step: int, rng: np.random.Generator) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self) -> Iterator[list]:
        for step in range(self.steps):
            rng = np.random.default_rng([self.seed, self.epoch, step])
            yield self.encode(self.batch(step, rng), rng)


class TupleBatchSampler(TermBatchSampler):
    """Each step batch_size tuples of the pool, taken in order from an endless walk over the pool in a fresh
    (seed, pass)-seeded order each pass (the anchor's shuffled DataLoader over CKDSample); rows: every tuple's
    positives, then every tuple's negatives."""

    def __init__(self, count: int, batch_size: int, seed: int, views: int, fresh_draws: bool, positives: int,
                 negatives: int, pool_size: int) -> None:
        super().__init__(count, batch_size, seed, views, fresh_draws)
        self.positives = positives
        self._order: tuple[int, np.ndarray | None] = (-1, None)
        self.pool = tuple_pool(count, positives, negatives, pool_size, np.random.default_rng([seed, positives,
                                                                                              negatives]))

    def order(self, number: int) -> np.ndarray:
        """The pool's order in pass `number` (the last one kept: consecutive steps walk the same pass)."""
        if self._order[0] != number:
            self._order = (number, np.random.default_rng([self.seed, number]).permutation(len(self.pool)))
        return self._order[1]

    def batch(self, step: int, rng: np.random.Generator) -> np.ndarray:
        start = (self.epoch * self.steps + step) * self.batch_size
        walk = np.arange(start, start + self.batch_size)
        passes, offsets = np.divmod(walk, len(self.pool))
        chosen = np.empty(len(walk), dtype=np.int64)
        for number in np.unique(passes):
            chosen[passes == number] = self.order(int(number))[offsets[passes == number]]
        tuples = self.pool[chosen]
        return np.concatenate([tuples[:, :self.positives].ravel(), tuples[:, self.positives:].ravel()])


class ClassGroupedBatchSampler(TermBatchSampler):
    """Each step: the classes in a random order, `per_class` random examples of each (all of a smaller class),
    until the batch is full, cut to batch_size rows (RKDSampler)."""

    def __init__(self, count: int, batch_size: int, seed: int, views: int, fresh_draws: bool, labels: np.ndarray,
                 per_class: int) -> None:
        super().__init__(count, batch_size, seed, views, fresh_draws)
        labels = np.asarray(labels)
        self.per_class = int(per_class)
        self.members = [np.flatnonzero(labels == label) for label in np.unique(labels)]

    def batch(self, step: int, rng: np.random.Generator) -> np.ndarray:
        rows: list[np.ndarray] = []
        taken = 0
        for label in rng.permutation(len(self.members)):
            members = self.members[label]
            rows.append(rng.choice(members, min(self.per_class, len(members)), replace=False))
            taken += len(rows[-1])
            if taken >= self.batch_size:
                break
        return np.concatenate(rows)[: self.batch_size]
