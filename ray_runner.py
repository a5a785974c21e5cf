"""Hyperparameter sweeps on Ray Tune.

    python ray_runner.py search=NAME [tune.KEY=VALUE ...] [training overrides ...]

Search spaces live in cfg/search/; runner settings in cfg/tune.yaml (tune.*); any other override goes to
every trial. Each trial runs the same function as train.py / distill_train.py and leaves its own run
folder and record; the sweep's summary (best trials, every trial's record) is printed and written to
${paths.output_dir}/tune/<name>/sweep.json.
"""
import sys

from runs.stops import exit_on_user_error


def main(arguments: list[str]) -> None:
    if {"--help", "-h"} & set(arguments):
        from runs.cli_help import options
        print(f"{__doc__.strip()}\n\nsearch spaces: {', '.join(options('search'))}")
        return
    from runs.sweep import print_summary, run_sweep, split_arguments
    runner, trials = split_arguments(arguments)
    if not any(a.split("=", 1)[0] == "search" for a in runner):
        from runs.configs import CFG_DIR
        names = sorted(p.stem for p in (CFG_DIR / "search").glob("*.yaml"))
        sys.exit(f"error: name a search space with search=NAME (one of {names}, from cfg/search/)")
    summary = exit_on_user_error(lambda _: run_sweep(runner, trials), None)
    top = next((int(a.split("=", 1)[1]) for a in runner if a.startswith("tune.top=")), 10)
    print_summary(summary, top)


if __name__ == "__main__":
    main(sys.argv[1:])
