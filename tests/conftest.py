import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
# Two cores here: more threads than cores only slows the many tiny ops of test-sized models; under pytest-xdist
# (README's command runs a worker per core) each worker takes one.
os.environ.setdefault("OMP_NUM_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
# Waiting threads sleep instead of spinning (as runs/__init__.py sets for every run): suites side by side share cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the session, so generated datasets (mnist1d) are made once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def quickstart_outputs(tmp_path_factory) -> Path:
    """One output folder for the tiny quickstart runs through the entry points (tests/test_console.py,
    tests/test_readme_commands.py): its teacher and scratch student are trained once and then reused, as they
    are for a user who runs the quickstart and then `kd=NAME`."""
    return tmp_path_factory.mktemp("quickstart_runs")


@pytest.fixture
def cli(monkeypatch):
    """cli(script, arguments): runs an entry point in this process as `python script arguments` would (as
    __main__, so that Hydra finds cfg/ beside it); restores the logging that Hydra reconfigures."""
    import logging
    import runpy
    import sys

    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level

    def run(script: str, arguments: list[str]) -> None:
        monkeypatch.setattr(sys, "argv", [script, *arguments])
        GlobalHydra.instance().clear()
        try:
            runpy.run_path(str(Path(__file__).resolve().parent.parent / script), run_name="__main__")
        finally:
            GlobalHydra.instance().clear()
            HydraConfig.instance().cfg = None  # the app's config is this run's alone
    yield run
    root.handlers[:] = handlers
    root.setLevel(level)
