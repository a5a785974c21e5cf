"""Optional dependencies (timm, transformers): imported on use, and a clear stop with the install command when
missing, so the project runs without them."""
from __future__ import annotations

import importlib
from types import ModuleType

from errors import UserError


class MissingDependencyError(UserError, ImportError):
    """An optional package a config asks for is not installed; the message gives the install command."""


# The project's extra (pyproject.toml [project.optional-dependencies]) that installs each package.
EXTRAS = {"timm": "timm", "transformers": "hf"}


def require(package: str, wanted_by: str) -> ModuleType:
    """`import package`, or a MissingDependencyError naming `wanted_by` (e.g. "model=timm") and the fix."""
    try:
        return importlib.import_module(package)
    except ImportError:
        extra = EXTRAS.get(package, package)
        raise MissingDependencyError(
            f"{wanted_by} needs the optional package '{package}', which is not installed; install it with "
            f"`pip install {package}` (or `pip install -e .[{extra}]` in this checkout)") from None
