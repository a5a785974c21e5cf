"""Distill a student from a teacher. With no arguments: the offline quickstart on mnist1d."""
import hydra
from omegaconf import DictConfig

from runs.stops import exit_on_user_error


@hydra.main(config_path="cfg", config_name="distill", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from runs.console import configure_console
    configure_console(bool(cfg.get("verbose")))  # before the heavy imports, whose warnings it filters
    from runs.training import run_distill  # imported here so `--help` stays fast
    exit_on_user_error(run_distill, cfg)


if __name__ == "__main__":
    from runs.preflight import preflight
    preflight("distill")  # before Hydra writes anything: overrides that compose, a folder that takes the run
    main()
