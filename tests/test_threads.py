"""Thread counts from the CPUs a process is allowed, split between the fits started together."""
import pytest
from omegaconf import OmegaConf

from nefs.errors import FitnefError
from tasks.threads import (JOBS_ENV, THREADS_ENV, allowed_cpus, cgroup_cpus, concurrent_jobs, count_jobs,
                           plan_threads, slurm_cpus)


def test_cgroup_v2_quota_is_the_tightest_on_the_path(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "a" / "cpu.max").write_text("300000 100000\n")
    (tmp_path / "a" / "b" / "cpu.max").write_text("150000 100000\n")
    assert cgroup_cpus(tmp_path, "0::/a/b\n") == 1.5
    assert cgroup_cpus(tmp_path, "0::/a\n") == 3.0
    assert cgroup_cpus(tmp_path, "0::/\n") is None          # "max": no limit


def test_cgroup_v1_quota_at_the_path_or_at_a_container_root(tmp_path):
    d = tmp_path / "cpu,cpuacct" / "slurm" / "job1"
    d.mkdir(parents=True)
    (d / "cpu.cfs_quota_us").write_text("400000")
    (d / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpus(tmp_path, "4:cpu,cpuacct:/slurm/job1\n3:memory:/x\n") == 4.0
    root = tmp_path / "c2" / "cpu,cpuacct"
    root.mkdir(parents=True)
    (root / "cpu.cfs_quota_us").write_text("-1")
    (root / "cpu.cfs_period_us").write_text("100000")
    assert cgroup_cpus(tmp_path / "c2", "4:cpu,cpuacct:/docker/abc\n") is None  # -1: unlimited


def test_allowed_is_the_smallest_limit():
    assert allowed_cpus({0, 1, 2, 3}, None, None, 64) == 4
    assert allowed_cpus(set(range(64)), 2.5, None, 64) == 2     # a fractional quota rounds down
    assert allowed_cpus(set(range(64)), 0.5, None, 64) == 1
    assert allowed_cpus(set(range(64)), None, 8, 64) == 8
    assert slurm_cpus({"SLURM_CPUS_PER_TASK": "6"}) == 6 and slurm_cpus({}) is None


def test_plan_splits_allowed_cpus_between_concurrent_jobs():
    cpus = set(range(16))
    assert plan_threads({}, cpus, None, 16).threads == 16
    assert plan_threads({JOBS_ENV: "4"}, cpus, None, 16).threads == 4
    assert plan_threads({JOBS_ENV: "3", "SLURM_CPUS_PER_TASK": "8"}, cpus, None, 16).threads == 2
    assert plan_threads({JOBS_ENV: "32"}, cpus, None, 16).threads == 1
    # joblib's OMP_NUM_THREADS is kept when we know nothing better, ours wins when we do
    assert plan_threads({"OMP_NUM_THREADS": "1"}, cpus, None, 16).threads is None
    assert plan_threads({"OMP_NUM_THREADS": "1", JOBS_ENV: "2"}, cpus, None, 16).threads == 8
    assert plan_threads({THREADS_ENV: "3", JOBS_ENV: "2"}, cpus, None, 16).threads == 3
    with pytest.raises(FitnefError, match=f"{JOBS_ENV}='two'"):
        plan_threads({JOBS_ENV: "two"}, cpus, None, 16)


def test_concurrent_jobs_of_a_multirun():
    joblib = OmegaConf.create({"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher",
                               "n_jobs": -1})
    assert concurrent_jobs(joblib, num_jobs=4, allowed=16) == 4
    assert concurrent_jobs(joblib, num_jobs=4, allowed=2) == 2
    assert concurrent_jobs({**joblib, "n_jobs": 3}, num_jobs=8, allowed=16) == 3
    assert concurrent_jobs({"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"}, 8, 16) == 1
    assert count_jobs(["nef=siren,mlp", "task.shard=range(4)", "device=cpu"]) == 8


def test_share_cpus_callback_tells_the_jobs_of_a_joblib_multirun(monkeypatch):
    import os

    from tasks.threads import ShareCpus

    env = {k: v for k, v in os.environ.items() if k not in (JOBS_ENV, THREADS_ENV)}
    monkeypatch.setattr(os, "environ", env)  # what the callback sets stays in this test
    monkeypatch.setattr("tasks.threads.machine_plan", lambda env=None: plan_threads({}, {0, 1, 2, 3}, None, 4))
    cfg = OmegaConf.create({"hydra": {"overrides": {"task": ["task.num_shards=2", "task.shard=0,1"]},
                                      "launcher": {"_target_": "hydra_plugins.hydra_joblib_launcher.joblib_launcher."
                                                               "JoblibLauncher", "n_jobs": -1}}})
    ShareCpus().on_multirun_start(cfg)
    assert os.environ[JOBS_ENV] == "2"      # 2 jobs on 4 CPUs: 2 threads each, not joblib's 4 // 4 = 1
    assert plan_threads(dict(os.environ, OMP_NUM_THREADS="1"), {0, 1, 2, 3}, None, 4).threads == 2
