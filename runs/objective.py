"""The value train.py and distill_train.py hand back to Hydra, for sweepers that search through Hydra's multirun
(hydra/sweeper=optuna): the best checkpoint's validation top-1 error, 1 - best val/top1, which Optuna's sweeper
minimises (its default direction). Runs that keep no best checkpoint (test_only) return None."""
from __future__ import annotations


def sweep_objective(record: dict | None) -> float | None:
    top1 = ((record or {}).get("best") or {}).get("val/top1")
    return None if top1 is None else 1.0 - float(top1)
