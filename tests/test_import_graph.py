"""Imports run one way: scripts -> benchmarks and entry points -> runs -> tasks -> losses, datamodules -> models
-> errors.
No package imports one above it, and no modules import each other in a circle; imports inside functions
count too, so a local import cannot hide either."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Lower layers never import higher ones; packages on one layer never import each other.
LAYERS = {"errors": 0, "models": 1, "datamodules": 2, "losses": 2, "tasks": 3, "runs": 4,
          "benchmarks": 5, "train": 5, "distill_train": 5, "ray_runner": 5, "scripts": 6}


def project_modules() -> dict[str, Path]:
    modules = {}
    paths = [p for top in LAYERS for p in ([ROOT / f"{top}.py"] if (ROOT / f"{top}.py").is_file()
                                             else (ROOT / top).rglob("*.py"))]
    for path in paths:
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def imports_of(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules that `path` imports anywhere in it (top level or inside functions)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


MODULES = project_modules()
GRAPH = {name: imports_of(path, name, MODULES) for name, path in MODULES.items()}


def layer(module: str) -> int:
    return LAYERS[module.split(".")[0]]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_import_runs_back_up(module):
    upward = sorted(target for target in GRAPH[module]
                    if target.split(".")[0] != module.split(".")[0] and layer(target) >= layer(module))
    assert not upward, f"{module} imports {upward}, which sit on its layer or above it"


def test_no_circle():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH[module]):
            if state.get(target) == "open":
                circle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_the_checker_sees_a_hidden_circle(tmp_path):
    """A function-local import that closes a circle is found (the checker cannot pass vacuously)."""
    (tmp_path / "a.py").write_text("import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from a import x\n")
    modules = {"a": tmp_path / "a.py", "b": tmp_path / "b.py"}
    assert imports_of(modules["a"], "a", modules) == {"b"}
    assert imports_of(modules["b"], "b", modules) == {"a"}
