"""The experiment generator: every reproduction cell under cfg/experiment/ written from small tables.

One module per paper holds its anchor's numbers and recipes as tables and a `build()` that turns them into cells;
`cells` holds what the papers share (the YAML writing, SGD, schedules, loss weights pinned from cfg/kd), and
`imagenet` the ImageNet pieces of mdistiller and torchdistill. scripts/make_experiments.py is the command line.
Loss weights of RepDistiller / mdistiller cells are read from cfg/kd/<method>.yaml (whose defaults are
RepDistiller's), checked against the values the anchor's scripts publish, then pinned in each cell, so a later
change of a method's defaults cannot silently change a reproduction (a test re-runs the generator and compares the
committed files byte for byte). Hand-written experiments (e.g. quickstart.yaml) carry no GENERATED marker and are
left alone.
"""
from __future__ import annotations

from pathlib import Path

from scripts.experiments import (ckd, clskd, ctkd, deit, fidelity, kdpp, lskd, mdistiller, mlkd, repdistiller,
                                 semiparametric, torchdistill, ttm)
from scripts.experiments.cells import EXPERIMENT_DIR, MARKER, GeneratorError

BUILDERS = {"repdistiller": repdistiller.build, "mdistiller": mdistiller.build, "torchdistill": torchdistill.build,
            "semiparametric": semiparametric.build, "fidelity": fidelity.build, "ckd": ckd.build,
            "ttm": ttm.build, "kdpp": kdpp.build, "clskd": clskd.build, "lskd": lskd.build, "ctkd": ctkd.build,
            "mlkd": mlkd.build, "deit": deit.build}
PAPERS = tuple(BUILDERS)


def render_all() -> dict[Path, str]:
    """Every generated file: path -> text."""
    files: dict[Path, str] = {}
    for paper, build in BUILDERS.items():
        for cell in build():
            path = EXPERIMENT_DIR / f"{cell.name}.yaml"
            if path in files:
                raise GeneratorError(f"two cells are named {cell.name}")
            if not cell.name.startswith(paper + "/"):
                raise GeneratorError(f"cell {cell.name} is not under {paper}/")
            files[path] = cell.text()
    return files


def generated_on_disk() -> list[Path]:
    return sorted(p for p in EXPERIMENT_DIR.rglob("*.yaml") if MARKER in p.read_text())


def names(paper: str | None = None) -> list[str]:
    found = sorted(str(p.relative_to(EXPERIMENT_DIR).with_suffix("")) for p in render_all())
    return [n for n in found if paper is None or n.startswith(paper + "/")]
