"""A non-editable install carries its configs: `python -m tasks.fit` works from any directory."""
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # fits through fresh processes (a pip install, for packaging)

ROOT = Path(__file__).resolve().parents[1]


def test_plain_install_runs_the_default_job_from_another_directory(tmp_path):
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stderr[-2000:]
    assert (target / "conf" / "config.yaml").is_file() and (target / "conf" / "task" / "image.yaml").is_file()
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", "import tasks, nefs; print(tasks.__file__, nefs.__file__)"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == [str(target / "tasks" / "__init__.py"), str(target / "nefs" / "__init__.py")]
    fit = subprocess.run([sys.executable, "-m", "tasks.fit", "task.train.end_idx=4", "task.train.num_steps=2",
                          "task.train.compile=false", "task.log.progress=false", f"hydra.run.dir={tmp_path / 'run'}"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-2000:]
    assert "fitted 4 NeFs" in fit.stdout
    # the default store, named after the run's one identity override
    assert (work / "outputs" / "nefs" / "digits" / "SIREN@task.train.num_steps:2" / "zarr.json").is_file()
