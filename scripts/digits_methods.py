"""Every distillation method on the digits image pair over seeds: the method table in results/digits/methods/.

    python scripts/digits_methods.py [--seeds 0,1,2] [--methods kd,dkd,...] [--out results/digits/methods]
        [--allow-dirty] [Hydra overrides ...]

Runs `python distill_train.py data=digits kd=NAME seed=S` (cfg/experiment/recipe/digits.yaml: ResNet-32 -> ResNet-8,
students on 150 training images, 30 epochs) for every method of cfg/kd/ (or --methods) and seed, in this process.
Run folders are keyed by the config's hash, so finished runs are reused: after new methods land, running it again
trains only those (and each seed's teacher and scratch student are trained once, shared by every method). A method
that fails is reported at the end; the others go on.

Then it copies the records into OUT/records/ and makes, with scripts/make_table.py and scripts/plots.py:
OUT/table.md|tex (test top-1 %, last and best-on-validation epoch, the student from scratch as a row, the teacher
in the header), OUT/agreement.md|tex and OUT/kl.md|tex (fidelity to the teacher, last epoch), OUT/methods.png|pdf
(bars, scratch and teacher lines), OUT/fidelity.png|pdf, and OUT/README.md with the command, the commits and the
time taken. Results in the repository come from a clean commit: a tree with uncommitted changes stops it unless
--allow-dirty (the README then says so).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from errors import find_user_error, one_line
from runs.stops import exit_on_user_error

ROOT = Path(__file__).resolve().parent.parent


# A line per run instead of progress bars; a run this script was stopped in continues from its last checkpoint.
QUIET_RESUMABLE = ["trainer.enable_progress_bar=false", "resume=auto"]


def all_methods() -> list[str]:
    return sorted(path.stem for path in (ROOT / "cfg" / "kd").glob("*.yaml"))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=lambda text: [int(s) for s in text.split(",")], default=[0, 1, 2],
                        help="comma-separated (default 0,1,2)")
    parser.add_argument("--methods", type=lambda text: text.split(","), default=None,
                        help="comma-separated kd= names (default: every cfg/kd/*.yaml)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "digits" / "methods")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="run from a tree with uncommitted changes (a trial: the README says so)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides for every run, e.g. paths.output_dir=DIR")
    return parser.parse_args(argv)


def train_all(methods: list[str], seeds: list[int], overrides: list[str]
              ) -> tuple[list[dict], dict[str, str], dict[str, str], list[float]]:
    """(records, failures by method, methods that refuse the pair with their reason, seconds of the runs trained
    here): every method x seed, finished ones reused."""
    from runs.configs import compose
    from runs.folders import run_folder
    from runs.records import read_record
    from runs.console import configure_console
    from runs.training import run_distill
    configure_console(verbose=False)  # a line per run, not Lightning's INFO lines and tips (after Lightning's import)
    records, failures, not_applicable, trained = [], {}, {}, []
    for method in methods:
        for seed in seeds:
            started = time.time()
            try:
                cfg = compose("distill", ["data=digits", f"kd={method}", f"seed={seed}", *QUIET_RESUMABLE, *overrides])
                reused = read_record(run_folder(cfg)) is not None  # finished before: its record is reused
                record = run_distill(cfg, quiet=True)
            except Exception as error:  # noqa: BLE001 - one method's failure must not stop the table
                reason = one_line(find_user_error(error) or error)
                if reason.startswith(f"kd={method} cannot run on "):  # made for other models (DeiT's token)
                    not_applicable[method] = reason
                    print(f"kd={method}: does not apply to this pair ({reason})", flush=True)
                else:
                    failures[method] = f"{type(error).__name__}: {reason}"
                    print(f"kd={method} seed={seed}: failed ({failures[method]})", flush=True)
                break
            took = time.time() - started
            if not reused:
                trained.append(took)
            print(f"kd={method} seed={seed}: test top-1 {100 * record['last']['test/top1']:.2f} % "
                  f"({'reused' if reused else f'{took:.0f} s'})", flush=True)
            records.append(record)
    return records, failures, not_applicable, trained


def copy_records(records: list[dict], folder: Path) -> None:
    """The runs' records as FOLDER/<run folder name>/record.json (a fresh folder: only this table's runs)."""
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    for record in records:
        target = staging / Path(record["run_dir"]).name
        target.mkdir(parents=True, exist_ok=True)
        (target / "record.json").write_text(json.dumps(record, indent=2, default=str))
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def shown_path(path: Path) -> str:
    """`path` relative to the repository where it lies inside it (commands in a README work from a checkout)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def make_tables(out: Path) -> list[str]:
    """The tables and plots, each by its script's own code; returns the commands (for the README)."""
    from scripts import make_table, plots
    records = shown_path(out / "records")
    pair = ["--cols", "teacher.model.name,student.name"]
    commands = [
        ["make_table.py", records, "--rows", "kd.name", *pair, "--baselines", "--label=-=scratch",
         "--row-order", "scratch", "--out", shown_path(out / "table")],
        ["make_table.py", records, "--rows", "kd.name", *pair, "--metric", "test/agreement", "--epoch", "last",
         "--out", shown_path(out / "agreement")],
        ["make_table.py", records, "--rows", "kd.name", *pair, "--metric", "test/kl", "--epoch", "last",
         "--out", shown_path(out / "kl")],
        ["plots.py", "methods", records, "--rows", "kd.name", "--baselines", "--out", shown_path(out / "methods")],
        ["plots.py", "fidelity", records, "--group", "kd.name", "--mean", "--out", shown_path(out / "fidelity")],
    ]
    for script, *arguments in commands:
        (make_table if script == "make_table.py" else plots).main([*arguments, "--print", "none"]
                                                                 if script == "make_table.py" else arguments)
    return [" ".join(["python", f"scripts/{script}", *(a if " " not in a else f"'{a}'" for a in arguments)])
            for script, *arguments in commands]


def readme(args: argparse.Namespace, argv: list[str], records: list[dict], failures: dict[str, str],
           not_applicable: dict[str, str], trained: list[float], seconds: float, state: dict) -> str:
    commits = sorted({(r.get("git_commit") or "?")[:12] + (" (uncommitted changes)" if r.get("git_dirty") else "")
                      for r in records})
    table = (args.out / "table.md").read_text() if (args.out / "table.md").is_file() else ""
    lines = [
        "# Every method on the digits pair",
        "",
        f"Made by `{' '.join(['python scripts/digits_methods.py', *argv])}` from commit {state['git_commit']}"
        + (" WITH UNCOMMITTED CHANGES (--allow-dirty: a trial, not a result for the repository)"
           if state["git_dirty"] else "") + ".",
        f"Runs: {len(records)} records (methods x seeds {args.seeds}); their commits: {', '.join(commits)}.",
        f"This invocation took {seconds / 60:.1f} min, {len(trained)} runs trained here "
        + (f"(mean {sum(trained) / len(trained):.0f} s each, each seed's teacher and scratch student included in its "
           f"first)" if trained else "")
        + "; the others were reused from their run folders.",
        "",
        "`python distill_train.py data=digits kd=NAME` (cfg/experiment/recipe/digits.yaml): ResNet-32 teacher trained on "
        "all 1293 training images, ResNet-8 students (KD and from scratch) on 150 of them, 30 epochs, SGD lr 0.05, "
        "cosine; each method with its published defaults, pre-training phases scaled by 0.125 (30 of 240 epochs). "
        "Test set: 360 images.",
        "",
        table.strip(),
    ]
    if not_applicable:
        lines += ["", "Methods made for other models, which refuse this pair before any training:", "",
                  *(f"- `{m}`: {reason}" for m, reason in not_applicable.items())]
    if failures:
        lines += ["", "Methods that failed:", "", *(f"- `{m}`: {reason}" for m, reason in failures.items())]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, argv: list[str]) -> int:
    import os
    from runs.folders import committed_state
    args.out = args.out.resolve()
    os.chdir(ROOT)  # the commands written into the README run from the repository's root
    state = committed_state(args.allow_dirty)
    methods = args.methods or all_methods()
    unknown = sorted(set(methods) - set(all_methods()))
    if unknown:
        raise SystemExit(f"error: unknown methods {unknown}; pick from cfg/kd/: {', '.join(all_methods())}")
    started = time.time()
    records, failures, not_applicable, trained = train_all(methods, args.seeds, args.overrides)
    if not records:
        raise SystemExit("error: no method finished: no table")
    copy_records(records, args.out / "records")
    commands = make_tables(args.out)
    text = readme(args, argv, records, failures, not_applicable, trained, time.time() - started, state)
    text += "\nThe tables and plots, from the records:\n\n```bash\n" + "\n".join(commands) + "\n```\n"
    (args.out / "README.md").write_text(text)
    print(text)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    sys.exit(exit_on_user_error(lambda a: run(a, argv), parse_args(argv)))


if __name__ == "__main__":
    main()
