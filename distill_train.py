"""Distill a student from a teacher. With no arguments: the offline quickstart on mnist1d."""
import hydra
from omegaconf import DictConfig

from runs.stops import exit_on_user_error


@hydra.main(config_path="cfg", config_name="distill", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from runs.console import configure_console
    configure_console(bool(cfg.get("verbose")))  # before the heavy imports, whose warnings it filters
    from runs.objective import sweep_objective
    from runs.training import run_distill  # imported here so `--help` stays fast
    return sweep_objective(exit_on_user_error(run_distill, cfg))  # what Hydra's sweepers (Optuna) minimise


if __name__ == "__main__":
    import sys
    if {"--help", "-h"} & set(sys.argv[1:]):  # one screen, from cfg/ (Hydra's own: --hydra-help)
        from runs.cli_help import app_help
        sys.exit(print(app_help("distill", "distill_train.py")))
    from runs.preflight import preflight
    preflight("distill")  # before Hydra writes anything: overrides that compose, a folder that takes the run
    main()
