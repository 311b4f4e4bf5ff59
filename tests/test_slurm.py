"""Sharded fits on a real (single-node) SLURM cluster, submitted the way the README says:
``python -m tasks.fit -m ... task.num_shards=4 task.shard='range(4)' hydra/launcher=submitit_slurm``.

The cluster (munged, slurmctld, slurmd; scripts/slurm_cluster.py) is started once for this file in a
temp folder and stopped afterwards; Debian's slurm-wlm and munge are apt-installed when missing, so
CI (root, fresh machine) needs nothing set up by hand. Without root and without SLURM the tests skip.
"""
import importlib.util
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nefs import open_store
from nefs.errors import FitnefError

ROOT = Path(__file__).resolve().parents[1]
N = 64  # NeFs of the fit: 4 shards of 16, one chunk each (2 CPUs: 2 shards at a time)
FIT = [f"task.train.end_idx={N}", "task.train.num_steps=50", "task.train.compile=false",
       "task.log.progress=false", "scheduler.value=1e-3"]
CHUNK = "task.train.num_parallel_nefs=16"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
                                 reason="needs hydra-submitit-launcher (fitnef[test])")]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from scripts import slurm_cluster

    try:
        slurm_cluster.ensure_installed()
    except FitnefError as e:
        pytest.skip(f"no SLURM cluster for these tests: {e}")
    t = time.perf_counter()
    c = slurm_cluster.start(tmp_path_factory.mktemp("slurm"))
    print(f"SLURM cluster up in {time.perf_counter() - t:.1f} s")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The same fit in one process, no launcher: what every sharded store must equal row for row."""
    from hydra import compose, initialize_config_dir

    from tasks.fitting import fit

    store = tmp_path_factory.mktemp("reference") / "store"
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        fit(compose(config_name="config", overrides=[*FIT, f"task.nef_dir={store}", "task.train.num_parallel_nefs=64"]))
    return open_store(store)


def _sharded_fit(cluster, tmp_path, store):
    """The README's SLURM command (4 shards as one array job, 1 CPU each), sweep and submitit dirs under tmp_path."""
    return [sys.executable, "-m", "tasks.fit", "-m", *FIT, CHUNK, "task.num_shards=4", "task.shard=range(4)",
            "hydra/launcher=submitit_slurm", f"hydra.launcher.partition={cluster.partition}",
            "hydra.launcher.cpus_per_task=1", "hydra.launcher.timeout_min=10",
            f"task.nef_dir={store}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]


def _run(cmd, cluster, timeout=300):
    r = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **cluster.env}, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}\n{cluster.logs()}"
    return r


def _fitted_per_job(stdout: str) -> list:
    """NeFs column of the sweep summary table, one entry per job."""
    return [int(n) for n in re.findall(r"^\| \d+ \| task\.shard=\d \| (\d+) \|", stdout, re.M)]


def _done_so_far(store) -> int:
    try:
        s = open_store(store)
    except FitnefError:  # not there yet, or being created
        return 0
    return int(s.done[:N].sum()) if s.group.attrs.get("complete") else 0


def _assert_equal_rows(store, reference, rows):
    assert np.array_equal(np.asarray(store.params.get_orthogonal_selection((rows, slice(None)))),
                          np.asarray(reference.params.get_orthogonal_selection((rows, slice(None)))))
    assert np.array_equal(store["psnr"][rows], reference["psnr"][rows])
    assert np.array_equal(store.steps[rows], reference.steps[rows])


def test_four_slurm_shards_equal_one_process(cluster, reference, tmp_path):
    store = tmp_path / "store"
    r = _run(_sharded_fit(cluster, tmp_path, store), cluster)
    assert _fitted_per_job(r.stdout) == [16, 16, 16, 16]
    # one array job of 4 tasks went through sbatch (submitit's folder: <job>_<task> per shard)
    scripts = list((tmp_path / "sweep" / ".submitit").glob("*/*_submission.sh"))
    assert scripts and "#SBATCH --array=0-3" in scripts[0].read_text()
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*_[0-3]/*_log.out"))) == 4
    s = open_store(store)
    assert s.done[:N].all() and not s.done[N:].any()
    _assert_equal_rows(s, reference, np.arange(N))


def test_status_while_running_then_scancel_and_resubmit(cluster, reference, tmp_path):
    store = tmp_path / "store"
    # one array task at a time: after shard 0's rows, the 3 others are still to come while status and scancel run
    cmd = [*_sharded_fit(cluster, tmp_path, store), "hydra.launcher.array_parallelism=1"]
    launcher = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **cluster.env}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        done = 0
        while done == 0:  # wait for the first shard's rows
            assert launcher.poll() is None, launcher.stdout.read()[-3000:]
            assert time.monotonic() < deadline, f"no row written after 180 s\n{cluster.logs()}"
            time.sleep(0.2)
            done = _done_so_far(store)
        st = _run([sys.executable, "-m", "tasks.status", f"task.nef_dir={store}"], cluster).stdout
        cluster.run("scancel", "--partition", cluster.partition)
        deadline = time.monotonic() + 60
        while cluster.run("squeue", "-h", "-o", "%i").stdout.strip():  # SIGTERM, then SIGKILL after KillWait
            assert time.monotonic() < deadline, cluster.run("squeue").stdout
            time.sleep(0.5)
        # this cluster has no accounting database, so submitit (which asks sacct) cannot tell a cancelled
        # job from a running one and the launcher would wait for ever: stop it as a user would (Ctrl-C)
        launcher.send_signal(signal.SIGINT)
        launcher.communicate(timeout=60)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
    # status, while the shards ran: the four shard ranges with their own counts, adding up to the total
    total = int(re.search(r": (\d+)/1797 done", st).group(1))
    shards = re.findall(r"^\s+(\d)\s+\[(\d+), (\d+)\)\s+(\d+)/(\d+)", st, re.M)
    assert [(int(k), int(lo), int(hi)) for k, lo, hi, _, _ in shards] == [(k, 16 * k, 16 * k + 16) for k in range(4)]
    assert sum(int(d) for *_, d, _ in shards) == total and 0 < total

    s = open_store(store)
    cut = np.flatnonzero(s.done[:N])
    assert 0 < len(cut) < N, f"the fit finished before scancel; the test needs it cancelled mid-fit\n{st}"
    _assert_equal_rows(s, reference, cut)  # what the cancelled jobs wrote is whole and right

    r = _run(cmd, cluster)  # resubmitted: fits only the rest
    assert sum(_fitted_per_job(r.stdout)) == N - len(cut)
    s = open_store(store)
    assert s.done[:N].all() and not s.done[N:].any()
    _assert_equal_rows(s, reference, np.arange(N))
