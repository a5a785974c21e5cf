"""`--help` of the entry points: one screen, derived from cfg/ (the config groups of the app's defaults list and
their options); the reproduction cells are counted per folder and listed on request
(`python scripts/make_experiments.py --list [PAPER]`). No torch here: help stays instant. Hydra's own help is
`--hydra-help`."""
from __future__ import annotations

import textwrap
from pathlib import Path

from omegaconf import OmegaConf

CFG_DIR = Path(__file__).resolve().parents[1] / "cfg"
PURPOSE = {"distill": "Distill a student from a teacher; with no arguments, the offline quickstart on mnist1d.",
           "train": "Train a model from scratch (teachers, baseline students)."}
WIDTH = 100


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CFG_DIR / group).glob("*.yaml"))


def groups(config_name: str) -> list[str]:
    """The config groups of cfg/<config_name>.yaml's defaults list (and its teacher's model), in its order."""
    found = []
    for entry in OmegaConf.to_container(OmegaConf.load(CFG_DIR / f"{config_name}.yaml")).get("defaults", []):
        if isinstance(entry, dict):
            group = next(iter(entry)).replace("optional ", "").replace("override ", "").strip()
            if group not in found:
                found.append(group)
    return found


def experiments_line() -> str:
    folders = sorted(p for p in (CFG_DIR / "experiment").iterdir() if p.is_dir() and p.name != "recipe")
    counts = ", ".join(f"{folder.name} {len(list(folder.rglob('*.yaml')))}" for folder in folders)
    return f"experiment: a complete recipe, e.g. experiment=repdistiller/kd_resnet32x4_resnet8x4 ({counts})"


def app_help(config_name: str, script: str) -> str:
    lines = [f"usage: python {script} [GROUP=OPTION ...] [KEY=VALUE ...]   (Hydra overrides; -m: a multirun)",
             PURPOSE[config_name], "", "config groups (cfg/<group>/<option>.yaml):"]
    for group in groups(config_name):
        if group in ("experiment", "paths", "callbacks", "teacher/model"):
            continue
        # student and teacher/model choose among cfg/model/ (their folders link to it)
        name = "student, teacher/model" if group == "student" else group
        names = options("model" if group == "student" else group)
        lines.append(textwrap.fill(f"{name}: {', '.join(names)}", WIDTH, subsequent_indent="    ", initial_indent="  "))
    lines.append(textwrap.fill(experiments_line(), WIDTH, initial_indent="  ", subsequent_indent="    "))
    lines.append("    list them: python scripts/make_experiments.py --list [PAPER]")
    lines += ["", textwrap.fill(f"the composed config: python {script} --cfg job [overrides]; every key: README.md, "
                                "docs/; Hydra's own options: --hydra-help", WIDTH)]
    return "\n".join(lines)
