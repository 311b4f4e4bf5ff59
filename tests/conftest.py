"""Shared fixtures: compose the real Hydra config the way `python -m tasks.fit` does."""
import importlib
import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
torch.set_num_threads(min(2, os.cpu_count() or 1))

from tasks.resolvers import register as _register_resolvers  # noqa: E402  what the entry points do first

_register_resolvers()


@pytest.fixture(autouse=True, scope="session")
def _runs_outside_the_repo(tmp_path_factory):
    """Hydra run and sweep dirs of the entry points the tests start go to a temp dir, not the user's outputs/."""
    os.environ["FITNEF_RUNS"] = str(tmp_path_factory.mktemp("hydra_runs"))
    yield


@pytest.fixture
def compose(tmp_path):
    """compose(*overrides) -> DictConfig of conf/config.yaml, with a store under tmp_path."""
    from hydra import compose as hcompose
    from hydra import initialize_config_dir

    def _compose(*overrides, nef_dir=None):
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return hcompose(config_name="config", overrides=[
                f"task.nef_dir={nef_dir or tmp_path / 'store'}", "task.log.progress=false", *overrides])

    return _compose


@pytest.fixture
def command(monkeypatch, capsys):
    """command("tasks.fit", *args) -> (returncode, stdout, stderr) of the command's ``main()`` run in this process
    as ``python -m tasks.fit *args`` runs it (typo check, Hydra, one-line errors), without a new interpreter:
    for tests of what a command says, where starting a process adds nothing but seconds."""
    def run(module, *args):
        main = importlib.import_module(module).main
        monkeypatch.setattr(sys, "argv", [module, *args])
        handlers, level = list(logging.root.handlers), logging.root.level
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:   # Hydra configured logging onto this test's captured streams: undo it
            logging.root.handlers[:] = handlers
            logging.root.setLevel(level)
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run
