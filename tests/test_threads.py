"""Thread counts from the CPUs a process is allowed, split between the fits started together."""
import pytest
import torch
from omegaconf import OmegaConf

from nefs.errors import FitnefError
from tasks.threads import (JOBS_ENV, THREADS_ENV, allowed_cpus, cgroup_cpus, concurrent_jobs, count_jobs,
                           machine_plan, plan_threads, slurm_cpus)


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


# -- fits started by hand find each other (issue 24) ------------------------------------------------------

import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from tasks.cpu_share import BusyCpus, CpuShare, split  # noqa: E402
from tasks.fit_registry import FitRegistry  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JOIN_AND_WAIT = ("import sys, time; from tasks.fit_registry import FitRegistry; "
                 "FitRegistry(sys.argv[1]).join(frozenset({0})); print('joined', flush=True); time.sleep(600)")


def _joined_child(folder):
    p = subprocess.Popen([sys.executable, "-c", JOIN_AND_WAIT, str(folder)], cwd=ROOT, stdout=subprocess.PIPE,
                         text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "joined"
    return p


def test_registry_lists_live_fits_in_start_order_and_forgets_dead_ones(tmp_path):
    me = FitRegistry(tmp_path)
    assert me.live() == []                      # no folder yet: nobody
    assert me.join(frozenset({0, 1}))
    child = _joined_child(tmp_path)
    try:
        live = me.live()
        assert [f.pid for f in live] == [os.getpid(), child.pid]
        assert live[1].cpus == frozenset({0}) and live[1].shares(frozenset({0, 1}))
        assert not live[1].shares(frozenset({2, 3}))
        assert FitRegistry(tmp_path).live() == live      # what any other process sees
    finally:
        child.send_signal(signal.SIGKILL)       # no chance to tidy: only the kernel's dropped lock tells
        child.wait()
    assert [f.pid for f in me.live()] == [os.getpid()]
    assert len(list(tmp_path.glob("*.fit"))) == 1   # the dead entry was removed
    me.leave()
    assert me.live() == [] and not list(tmp_path.glob("*.fit"))


def test_registry_ignores_unlocked_and_foreign_files(tmp_path):
    (tmp_path / "00000000000000000001-999999.fit").write_text('{"pid": 999999, "cpus": [0]}')  # left by a crash
    (tmp_path / "notes.txt").write_text("x")
    assert FitRegistry(tmp_path).live() == []
    assert not (tmp_path / "00000000000000000001-999999.fit").exists()


def test_registry_that_cannot_be_used_leaves_the_fit_alone(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    reg = FitRegistry(tmp_path / "file" / "fits")
    assert not reg.join(frozenset({0})) and reg.live() == []
    share = CpuShare(4, registry=reg, busy=_FixedBusy([]), set_threads=lambda n: None)
    assert share.start() == 4


def test_split_gives_the_remainder_to_the_first_fits():
    assert [split(4, 3, r) for r in range(3)] == [2, 1, 1]
    assert [split(2, 2, r) for r in range(2)] == [1, 1]
    assert [split(2, 3, r) for r in range(3)] == [1, 1, 1]      # more fits than cores: one thread each
    assert split(8, 1, 0) == 8 and split(0, 1, 0) == 1


def test_busy_cpus_are_the_machines_busy_time_minus_the_fits(tmp_path):
    clock = [0.0]

    def write(busy_per_cpu, fit_ticks):
        hz = os.sysconf("SC_CLK_TCK")
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        for c, b in enumerate(busy_per_cpu):    # user nice system idle iowait irq softirq steal
            lines.append(f"cpu{c} {int(b * hz)} 0 0 {1000 * hz} 55 0 0 0 0 0")
        (tmp_path / "stat").write_text("\n".join(lines) + "\n")
        (tmp_path / "42").mkdir(exist_ok=True)
        fields = ["S"] + ["0"] * 10 + [str(int(fit_ticks * hz)), "0"] + ["0"] * 30
        (tmp_path / "42" / "stat").write_text("42 (python -m tasks.fit) " + " ".join(fields))

    busy = BusyCpus([0, 1], proc=tmp_path, clock=lambda: clock[0])
    write([0, 0, 0], 0)
    assert busy.sample([42]) is None             # the first sample only starts the interval
    clock[0] = 2.0
    write([2.0, 3.0, 5.0], 3.0)                  # cpu2 is not ours; of 5 busy seconds the fit used 3
    assert busy.sample([42]) == pytest.approx(1.0)
    clock[0] = 4.0
    write([3.0, 4.0, 5.0], 5.0)                  # only the fit ran
    assert busy.sample([42]) == pytest.approx(0.0)


class _FixedBusy:
    def __init__(self, samples):
        self.samples = list(samples)

    def sample(self, pids):
        return self.samples.pop(0) if self.samples else None


class _FakeRegistry:
    def __init__(self, others=0):
        self.name, self.others = None, others

    def join(self, cpus):
        self.name = "5-me.fit"
        return True

    def live(self):
        from tasks.fit_registry import Fit

        fits = [Fit(f"{k}-other.fit", 1000 + k, None) for k in range(self.others)] + [Fit(self.name, 1, None)]
        return sorted(fits, key=lambda f: f.name)


def test_share_follows_fits_and_busy_processes_and_says_so_once(caplog):
    clock, set_to = [0.0], []
    reg = _FakeRegistry(others=1)
    busy = _FixedBusy([None])
    share = CpuShare(4, registry=reg, busy=busy, clock=lambda: clock[0], set_threads=set_to.append)
    caplog.set_level(logging.INFO, logger="tasks.cpu_share")
    assert share.start() == 2 and share.fits == 2 and share.rank == 1   # 4 CPUs, 2 fits, this one second

    def step(busy_cpus=0.0, seconds=1.0):
        clock[0] += seconds
        busy.samples.append(busy_cpus)
        return share.recheck()

    assert not step(seconds=0.5) and busy.samples == [0.0]   # within the interval: nothing looked at
    busy.samples.clear()
    assert not step(seconds=0.5) and share.threads == 2       # the same share: no line, nothing set
    reg.others = 0                                            # the other fit ended: all 4 are ours
    assert step() and share.threads == 4 and set_to == [4]
    assert not step(1.0)                          # a process spins one core: its first second moves the average
    assert step(1.0) and share.foreign == 1 and share.threads == 3 and set_to == [4, 3]
    assert not step(1.0) and not step(0.6)        # noise around the count: no change
    reg.others = 2                                # 2 more fits, started earlier: (4 - 1) CPUs for 3 fits
    assert step(1.0) and share.fits == 3 and share.rank == 2 and share.threads == 1
    while share.foreign:                          # the busy process ended
        step(0.0)
    assert share.threads == 1                     # 4 CPUs, 3 fits: 2, 1, 1, the first fit gets the remainder
    assert [r.getMessage() for r in caplog.records] == [
        "CPU threads: 4 (4 CPUs allowed)",
        "CPU threads: 3 (4 CPUs allowed, 1 busy with other processes)",
        "CPU threads: 1 (4 CPUs allowed, 1 busy with other processes, shared by 3 fits)",
        "CPU threads: 1 (4 CPUs allowed, shared by 3 fits)"]


def test_floor_from_concurrent_jobs_and_a_fixed_count_that_never_adapts():
    share = CpuShare(4, floor=2, registry=_FakeRegistry(), busy=_FixedBusy([]), set_threads=lambda n: None)
    assert share.start() == 2                     # alone in the registry, FITNEF_CONCURRENT_JOBS=2 says two
    assert not plan_threads({THREADS_ENV: "3"}, {0, 1, 2, 3}, None, 4).adapts
    assert not plan_threads({"OMP_NUM_THREADS": "2"}, {0, 1, 2, 3}, None, 4).adapts
    assert plan_threads({}, {0, 1, 2, 3}, None, 4).adapts


class _Flipping:
    """A share that changes the thread count at every look, as fits starting and ending would."""
    def __init__(self, counts):
        self.counts, self.looks = counts, 0

    def recheck(self):
        torch.set_num_threads(self.counts[self.looks % len(self.counts)])
        self.looks += 1


def test_thread_count_changing_mid_fit_leaves_parameters_as_a_fixed_count_does(compose, tmp_path, monkeypatch):
    """Results depend on the thread count no more than they did when it was fixed for the whole fit (on the
    2-core EPYC: not at all, 1, 2 and changing threads give the same bits)."""
    import numpy as np
    import torch._inductor.config as inductor_config

    import tasks.threads as threads
    from nefs import open_store
    from tasks.fitting import fit

    before = torch.get_num_threads()
    common = ["task.train.num_steps=50", "task.train.end_idx=64", "task.train.compile=true", "scheduler.value=1e-2"]
    params = {}
    try:
        for name, counts in (("one", [1]), ("two", [2]), ("changing", [1, 2, 2, 1, 2])):
            torch.set_num_threads(counts[0])
            changing = len(counts) > 1
            monkeypatch.setattr(threads, "_share", _Flipping(counts) if changing else None)
            # fixed counts as before issue 24; changing ones with the kernels use_allowed_cpus now compiles
            monkeypatch.setattr(inductor_config.cpp, "dynamic_threads", changing)
            fit(compose(*common, nef_dir=tmp_path / name))
            if changing:
                assert threads._share.looks >= 50   # it changed between every two steps
            params[name] = np.asarray(open_store(tmp_path / name).params[:64])
    finally:
        torch.set_num_threads(before)
    fixed = np.abs(params["one"] - params["two"]).max()
    assert np.abs(params["changing"] - params["one"]).max() <= max(fixed, 1e-5)
    assert np.abs(params["changing"] - params["two"]).max() <= max(fixed, 1e-5)
    assert not np.allclose(params["one"][0], params["one"][1])


def _start_fit(tmp_path, name, steps, runtime_dir):
    """``python -m tasks.fit`` as a person starts it (no thread settings), its log read line by line."""
    import queue
    import threading

    env = {k: v for k, v in os.environ.items() if k not in (JOBS_ENV, THREADS_ENV, "OMP_NUM_THREADS")}
    env.update(XDG_RUNTIME_DIR=str(runtime_dir), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "tasks.fit", "task.train.end_idx=64",
                             f"task.train.num_steps={steps}", "task.train.compile=false", "task.log.progress=false",
                             f"task.nef_dir={tmp_path / name}", f"hydra.run.dir={tmp_path / 'run' / name}"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc.lines = queue.Queue()
    threading.Thread(target=lambda: [proc.lines.put(line) for line in proc.stdout], daemon=True).start()
    proc.log = []
    return proc


def _next_share(proc, timeout=180.0):
    """The next 'CPU threads: N (...)' line of a fit as (N, the text in brackets); None if it ended first."""
    import queue
    import re

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            line = proc.lines.get(timeout=1.0)
        except queue.Empty:
            if proc.poll() is not None and proc.lines.empty():
                return None
            continue
        proc.log.append(line)
        m = re.search(r"CPU threads: (\d+) \((.*)\)", line)
        if m:
            return int(m.group(1)), m.group(2)
    raise AssertionError("no share line in %.0f s:\n%s" % (timeout, "".join(proc.log[-20:])))


def _threads_for(why, allowed):
    """What a share line's own figures give: (allowed - busy) split between the fits (any rank)."""
    import re

    busy = int((re.search(r"(\d+) busy", why) or [0, 0])[1])
    fits = int((re.search(r"shared by (\d+) fits", why) or [0, 1])[1])
    return {split(max(1, allowed - busy), fits, rank) for rank in range(fits)}


def test_two_fits_started_by_hand_split_the_cores_and_the_last_takes_them_back(tmp_path):
    allowed = machine_plan().allowed
    runtime = tmp_path / "runtime"             # a registry of their own, away from other fits on this machine
    runtime.mkdir()
    first = _start_fit(tmp_path, "first", 1_000_000, runtime)    # runs until killed
    second = None
    try:
        n, why = _next_share(first)
        assert "shared by" not in why and n in _threads_for(why, allowed)
        second = _start_fit(tmp_path, "second", 50, runtime)
        n, why = _next_share(second)
        assert "shared by 2 fits" in why and n in _threads_for(why, allowed)   # 2 CPUs: 1 thread each
        shares = []
        while (share := _next_share(first)) is not None:       # the first sees the second come ...
            shares.append(share)
            if any("shared by 2 fits" in w for _, w in shares) and "shared by" not in share[1]:
                break                                           # ... and go
        assert second.wait(timeout=300) == 0, "".join(second.log[-20:])
        assert any("shared by 2 fits" in w for _, w in shares), shares
        n, why = shares[-1]
        assert "shared by" not in why and n in _threads_for(why, allowed)   # the cores given back
        assert all(n in _threads_for(w, allowed) for n, w in shares)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
    assert FitRegistry(runtime / "fitnef-fits").live() == []     # the killed fit's entry counts no more


def test_a_fit_started_beside_a_busy_process_gives_it_its_core_at_the_first_look():
    clock = [0.0]
    share = CpuShare(2, registry=_FakeRegistry(), busy=_FixedBusy([None, 1.0]), clock=lambda: clock[0],
                     set_threads=lambda n: None)
    assert share.start() == 2            # nothing measured yet
    clock[0] += 5.0                      # data, compile: the first step comes seconds later
    assert share.recheck() and share.foreign == 1 and share.threads == 1
