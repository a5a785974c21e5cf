"""Before Hydra writes anything: the command line composes, and the run can write where it will.

train.py and distill_train.py call `preflight(config_name)` before their @hydra.main function runs: Hydra
creates its log folder under paths.output_dir before the run's own code starts, and reports its own errors
(an unknown key, an unknown option of a group, an override it cannot read) in several lines with exit status
1. Here each becomes one line with exit status 2: what was asked, the nearest valid names (difflib) and how to
list them all. An experiment that does not exist is refused too (the `optional experiment` default would
otherwise drop it without a word). `compose_checked` is the same composition for code that composes
configs itself (runs/configs.compose: sweeps, scripts).

Light on imports (Hydra and OmegaConf only): it runs before Lightning and torch load.
"""
from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path

from hydra import compose as hydra_compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from errors import ConfigError, one_line
from runs.writing import output_folder_problem

CFG_DIR = Path(__file__).resolve().parents[1] / "cfg"
SCRIPTS = {"train": "train.py", "distill": "distill_train.py", "tune": "ray_runner.py"}
# Hydra's own flags: with any of these Hydra prints or lists something (or runs a sweep); it is left to Hydra.
# Groups whose defaults are `optional` (cfg/distill.yaml: the data set's recipe and default pair): an option that does
# not exist would be dropped silently, so it is refused here.
OPTIONAL_GROUPS = ("experiment", "student", "teacher/model")
HYDRA_MODES = ("help", "hydra_help", "version", "cfg", "info", "shell_completion", "multirun", "config_path",
               "config_name", "config_dir", "experimental_rerun")


def preflight(config_name: str, argv: list[str] | None = None) -> None:
    """Exit with one line and status 2 if the command line does not compose, or if nothing can be written under
    its paths.output_dir; otherwise return, and Hydra runs the command (composing it again)."""
    from hydra._internal.utils import get_args_parser
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:  # a flag Hydra does not know: Hydra's own usage message says so
        return
    if any(getattr(args, mode, None) for mode in HYDRA_MODES):
        return
    try:
        cfg = compose_checked(config_name, list(args.overrides), with_hydra=True)
        output_dir = str(cfg.paths.output_dir)
    except ConfigError as error:
        _refuse(str(error))
    except Exception as error:  # noqa: BLE001 - a value that does not resolve: the run's own checks name it
        return
    problem = output_folder_problem(output_dir)
    if problem:
        _refuse(f"paths.output_dir={output_dir}: nothing can be written there ({problem}); choose a folder you can "
                f"write to: paths.output_dir=DIR (or set KD_OUTPUT_DIR)")


def _refuse(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(2)


def _compose(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    GlobalHydra.instance().clear()  # a reused process may hold another initialisation
    try:
        with initialize_config_dir(config_dir=str(CFG_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
    finally:
        GlobalHydra.instance().clear()


def compose_checked(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """The config the entry point would compose from `overrides`; a ConfigError in one line (explain) where
    Hydra refuses them, or where an experiment they name does not exist."""
    try:
        cfg = _compose(config_name, overrides, with_hydra)
    except HydraException as error:
        raise ConfigError(explain(error, config_name, overrides)) from None
    folders = _config_folders(overrides)
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        missing = not any((folder / key / f"{value}.yaml").is_file() for folder in folders)
        # experiment, student and teacher/model are `optional` defaults, which Hydra would drop without a word
        if key in OPTIONAL_GROUPS and value and value != "null" and missing:
            raise ConfigError(_unknown_option(key, value, config_name))
    return cfg


def _config_folders(overrides: list[str]) -> list[Path]:
    """cfg/ and the folders a `hydra.searchpath=[file://DIR, ...]` override adds (docs/extending.md's way to bring
    configs of your own)."""
    added = [value for override in overrides
             for key, _, value in [override.lstrip("+").partition("=")] if key == "hydra.searchpath"]
    return [CFG_DIR, *(Path(folder) for value in added for folder in re.findall(r"file://([^,\]\s'\"]+)", value))]


# ----------------------------------------------------------------------------------------------- explaining
def explain(error: HydraException, config_name: str, overrides: list[str]) -> str:
    """Hydra's refusal of `overrides` as one line: what was asked, the nearest valid names, how to list them."""
    text = str(error)
    missing = re.search(r"Could not find '([^']+)'", text)
    if isinstance(error, MissingConfigException) and missing:
        group, _, option = missing.group(1).rpartition("/")
        return _unknown_option(group, option, config_name, getattr(error, "options", None))
    override = re.search(r"Could not (?:override|delete from config\.) '([^']+)'", text)
    if override:
        key = override.group(1)
        full_key = getattr(error.__cause__, "full_key", None) or key
        asked = next((o for o in overrides if o.lstrip("+~").split("=", 1)[0] == key), key)
        return _unknown_key(asked, str(full_key), config_name, overrides)
    exists = re.search(r"An item is already at '([^']+)'", text)
    if exists:
        asked = next((o for o in overrides if o.lstrip("+").split("=", 1)[0] == exists.group(1)), exists.group(1))
        return (f"{asked}: {exists.group(1)} already exists, and a leading + adds a new key; write "
                f"{asked.lstrip('+')} to change it")
    choose = re.search(r"You must specify '([^']+)'", text)
    if choose:
        group = choose.group(1)
        return f"name a {group} with {group}=NAME: one of {', '.join(_options(group))} (cfg/{group}/)"
    unreadable = _unreadable_override(overrides)
    if unreadable:
        return unreadable
    return one_line(text.split("Config search path")[0])


def _script(config_name: str) -> str:
    return SCRIPTS.get(config_name, "train.py")


def _options(group: str) -> list[str]:
    folder = CFG_DIR / group
    return sorted(str(p.relative_to(folder).with_suffix("")) for p in folder.rglob("*.yaml")) if folder.is_dir() else []


def _nearest(asked: str, names: list[str]) -> list[str]:
    return difflib.get_close_matches(asked, names, n=3, cutoff=0.6)


def _did_you_mean(suggestions: list[str]) -> str:
    suggestions = list(dict.fromkeys(suggestions))
    return f"; did you mean {' or '.join(suggestions)}? " if suggestions else " "


def _unknown_option(group: str, option: str, config_name: str, options: list[str] | None = None) -> str:
    options = sorted(options) if options else _options(group)
    nearest = [f"{group}={name}" for name in _nearest(option, options)]
    shown = f"one of {', '.join(options)}" if len(options) <= 12 else f"{len(options)} options"
    return (f"{group}={option}: config group {group} has no option {option!r}{_did_you_mean(nearest)}"
            f"({shown}; list them: ls cfg/{group}/, or python {_script(config_name)} --help)")


def _unknown_key(asked: str, full_key: str, config_name: str, overrides: list[str]) -> str:
    parent, _, name = full_key.rpartition(".")
    keys = _keys_of(parent, config_name, [o for o in overrides if o != asked])
    groups = [p.name for p in CFG_DIR.iterdir() if p.is_dir()] if not parent else []  # kd=..., teacher/model=...
    prefix, typed = asked[: len(asked) - len(asked.lstrip("+~"))], asked.lstrip("+~").split("=", 1)
    rest = typed[0][len(full_key):]  # what follows the unknown part (e.g. ".lr" in optimzer.lr)
    value = f"={typed[1]}" if len(typed) > 1 else ""
    above = f"{parent}." if parent else ""
    nearest = [f"{prefix}{above}{key}{rest}{value}" for key in _nearest(name, sorted(set(keys)))]
    nearest += [f"{group}{value}" for group in _nearest(name, groups) if not rest]
    where = f"in {parent}" if parent else "at the top level"
    listing = f"python {_script(config_name)} --cfg job" + (f" --package {parent}" if parent else "")
    groups_listing = "" if parent else f"; the config groups: python {_script(config_name)} --help"
    fix = "" if prefix else f"; +{asked} would add it as a new key"
    return (f"{asked}: no key {name!r} {where}{_did_you_mean(nearest)}(list the keys: {listing}{groups_listing})"
            f"{fix}")


def _keys_of(parent: str, config_name: str, overrides: list[str]) -> list[str]:
    """The keys under `parent` in the config composed without the refused override ([] if that fails too)."""
    for attempt in (overrides, []):
        try:
            composed = _compose(config_name, attempt)
        except HydraException:
            continue
        node = OmegaConf.select(composed, parent) if parent else composed
        return [str(k) for k in node.keys()] if isinstance(node, DictConfig) else []
    return []


def _unreadable_override(overrides: list[str]) -> str | None:
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except HydraException as error:
            lines = [line for line in str(error).splitlines()
                     if line.strip() and not line.startswith(("Error parsing override", "See https"))]
            reason = lines[0] if lines else "Hydra's override grammar"
            return (f"cannot read the override {override!r} ({reason}); write KEY=VALUE, e.g. optimizer.lr=0.1 (quote "
                    f"values with brackets or spaces for the shell: 'model.hidden=[100,100]')")
    return None
