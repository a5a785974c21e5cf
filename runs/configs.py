"""The cfg/ tree: composing a config as the entry points would, reading single config files, and building
objects from config nodes."""
from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from errors import ConfigError, find_user_error
from losses import DistillationObjective
from runs.preflight import compose_checked

ROOT = Path(__file__).resolve().parents[1]
CFG_DIR = ROOT / "cfg"


def compose(config_name: str, overrides: list[str]) -> DictConfig:
    """The config the CLI entry point would build from these overrides; Hydra's refusal of them (an unknown key
    or option) is a one-line ConfigError with the nearest valid names (runs/preflight.py)."""
    return compose_checked(config_name, overrides)


def model_node(name: str) -> DictConfig:
    """cfg/model/<name>.yaml, for teachers named in a list (teacher.models)."""
    path = CFG_DIR / "model" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (CFG_DIR / "model").glob("*.yaml"))
        raise ConfigError(f"teacher.models names '{name}', which is not a model config; use some of {known}")
    return OmegaConf.load(path)


def experiment_in_use(choice: str | None) -> str:
    """The experiment a composition applied, from Hydra's choice for the group: its name, or "none" (none was
    chosen, or the data set named by the recipe interpolation has no recipe file)."""
    return choice if choice and (CFG_DIR / "experiment" / f"{choice}.yaml").is_file() else "none"


def chosen_experiment() -> str | None:
    """The experiment the running Hydra app composed (named on the command line, or the data set's recipe), or
    "none"; None when the config was not composed by the app (Ray trials, scripts and tests compose their own)."""
    if not HydraConfig.initialized():
        return None
    return experiment_in_use(HydraConfig.get().runtime.choices.get("experiment"))
def chosen_on_command_line(group: str) -> str | None:
    """The value the running Hydra app was given for `group` on its command line (e.g. "mlp1d" for model=mlp1d),
    or None: not given, or not composed by the app (Ray trials, scripts and tests compose their own)."""
    if not HydraConfig.initialized():
        return None
    for override in HydraConfig.get().overrides.task:
        key, _, value = str(override).lstrip("+~").partition("=")
        if key == group:
            return value
    return None


def instantiate(node, *args, **kwargs):
    """Hydra's instantiate, but a user error raised inside a constructor surfaces as itself."""
    try:
        return hydra_instantiate(node, *args, **kwargs)
    except InstantiationException as error:
        user_error = find_user_error(error)
        if user_error is None:
            raise
        raise user_error from None


def build_objective(cfg: DictConfig) -> DistillationObjective:
    terms = cfg.kd.get("terms")
    if not terms:
        raise ConfigError(f"kd={cfg.kd.get('name')} defines no terms; give kd.terms.<name> entries")
    for name, node in terms.items():
        if node is not None and "_target_" not in node:
            raise ConfigError(f"kd.terms.{name} names no term class (_target_), only {sorted(node)}: a config for "
                              f"another method may have set it (experiment=...); drop it with ~kd.terms.{name}, or add "
                              f"kd.terms.{name}._target_")
    return DistillationObjective({name: instantiate(node) for name, node in terms.items() if node is not None})
