"""Run the quickstart (distill_train.py with no choices: mnist1d's recipe) over several seeds and write its table.

    python scripts/quickstart_seeds.py --seeds 0,1,2 [Hydra overrides ...]

Writes results/quickstart/seed<N>.json (each run's record, config included) and results/quickstart/table.md
(mean +- std over seeds, test set, last epoch), and prints the table. Results in the repository come from a clean
commit: a tree with uncommitted changes stops it unless --allow-dirty (the table then says so).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from runs.configs import ROOT, compose
from runs.console import configure_console
from runs.folders import committed_state
from runs.tables import format_mean_std, markdown_table
from runs.stops import exit_on_user_error
from runs.training import run_distill

COLUMNS = (("teacher top-1 %", lambda r: 100 * r["last"]["test/teacher_top1"]),
           ("student from scratch top-1 %", lambda r: 100 * r["baseline"]["last"]["test/top1"]),
           ("KD student top-1 %", lambda r: 100 * r["last"]["test/top1"]),
           ("agreement %", lambda r: 100 * r["last"]["test/agreement"]),
           ("KL(teacher || student)", lambda r: r["last"]["test/kl"]))


def table_markdown(records: list[dict]) -> str:
    """One row: each column's mean ± std over the seeds' records (a single seed shows ± 0.00)."""
    row = [format_mean_std([value(r) for r in records], single_as_zero_spread=True) for _, value in COLUMNS]
    return markdown_table([name for name, _ in COLUMNS], [row])


def test_set(cfg) -> str:
    """What the records were tested on, in words (mnist1d's test split has 1000 examples)."""
    subset = cfg.data.get("test_subset")
    return f"{cfg.data.name} test set" + (f" (a fixed random {subset} of its examples)" if subset else " (1000 examples)"
                                          if cfg.data.name == "mnist1d" else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "quickstart")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run from a tree with uncommitted changes (a trial: the table says so)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides applied to every seed")
    args = parser.parse_args()
    state = exit_on_user_error(committed_state, args.allow_dirty)
    configure_console(verbose=False)  # the runs' progress and the table, not Lightning's INFO lines and tips
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for seed in args.seeds:
        cfg = compose("distill", [f"seed={seed}", *args.overrides])
        record = run_distill(cfg, quiet=True)
        (args.out / f"seed{seed}.json").write_text(json.dumps(record, indent=2, default=str))
        records.append(record)
    command = " ".join(["python scripts/quickstart_seeds.py --seeds", ",".join(map(str, args.seeds)), *args.overrides])
    table = "\n".join([table_markdown(records), "",
                       f"{test_set(cfg)}, last epoch, mean ± std over seeds {args.seeds}. "
                       f"Made by `{command}` at commit {str(state['git_commit'])[:12]}"
                       + (" WITH UNCOMMITTED CHANGES (a trial, not a result for the repository)." if state["git_dirty"]
                          else ".")])
    (args.out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
