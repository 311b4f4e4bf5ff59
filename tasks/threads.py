"""How many CPU threads a fit may use: the CPUs it is allowed, shared with the fits and busy processes beside it.

PyTorch sizes its thread pools from the machine, not from what this process may use: in a container or a
shared SLURM node with a CPU quota it starts more threads than it gets cores, and two fits started
together each start one per core. Threads that outnumber cores wait on each other at every OpenMP barrier;
two fits at once on 2 cores then each ran 8x slower (issues 16, 24). So each fit starts with

    allowed CPUs // FITNEF_CONCURRENT_JOBS (1 when unset)

threads, where *allowed* is the smallest of the affinity mask, the cgroup CPU quota (v2 ``cpu.max``, v1
``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``) and ``SLURM_CPUS_PER_TASK``, and from then on follows its share
(tasks/cpu_share.py): the allowed CPUs less those other processes keep busy, split between the fits running
on this machine, which find each other through a per-user registry (tasks/fit_registry.py) whatever started
them, and looked at again between steps (``share_cpus_between_steps``). ``FITNEF_CONCURRENT_JOBS`` is only
a floor on how many fits share the CPUs: the ``ShareCpus`` Hydra callback sets it for the jobs of a joblib
multirun, whose launcher would otherwise pin each job's threads by ``OMP_NUM_THREADS``; set it by hand for
fits the registry cannot see (another user's, another container's). ``FITNEF_NUM_THREADS`` sets the thread
count outright, and an ``OMP_NUM_THREADS`` of the user's is kept: both are fixed for the whole fit.

The functions take their inputs (affinity set, cgroup folder, environment) as arguments so they can be
tested without the machine they describe.
"""
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

JOBS_ENV = "FITNEF_CONCURRENT_JOBS"
THREADS_ENV = "FITNEF_NUM_THREADS"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _quota(quota: Optional[str], period: Optional[str]) -> Optional[float]:
    """CPUs a quota grants (quota/period), None for no limit or unreadable files."""
    try:
        q, p = float(quota), float(period)
    except (TypeError, ValueError):
        return None
    return q / p if q > 0 and p > 0 else None


def cgroup_cpus(root: Path = CGROUP_ROOT, self_cgroup: Optional[str] = None) -> Optional[float]:
    """CPUs the cgroup quota grants this process (fractional), None when unlimited.

    ``self_cgroup`` is the text of /proc/self/cgroup. v2: the tightest ``cpu.max`` from the process's
    cgroup up to the root; v1: ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` of the cpu controller, at the
    process's path or, in a container that mounts its own cgroup at the root, there.
    """
    root = Path(root)
    if self_cgroup is None:
        self_cgroup = _read(Path("/proc/self/cgroup")) or ""
    limits = []
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        rel = rel.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            d = root / rel
            while True:
                text = _read(d / "cpu.max")
                if text:
                    fields = text.split()
                    if len(fields) == 2 and fields[0] != "max":
                        limits.append(_quota(fields[0], fields[1]))
                if d == root or root not in d.parents:
                    break
                d = d.parent
        elif "cpu" in controllers.split(","):
            for d in (root / controllers / rel, root / controllers, root / "cpu" / rel, root / "cpu"):
                quota = _read(d / "cpu.cfs_quota_us")
                if quota is not None:
                    limits.append(_quota(quota, _read(d / "cpu.cfs_period_us")))
                    break
    if not self_cgroup.strip():  # no /proc/self/cgroup: a v2 root file is all we can read
        text = _read(root / "cpu.max")
        if text and len(text.split()) == 2 and text.split()[0] != "max":
            limits.append(_quota(*text.split()))
    limits = [x for x in limits if x]
    return min(limits) if limits else None


def slurm_cpus(env: Mapping[str, str]) -> Optional[int]:
    try:
        n = int(env.get("SLURM_CPUS_PER_TASK", ""))
    except ValueError:
        return None
    return n if n > 0 else None


def allowed_cpus(affinity: Optional[set], cgroup: Optional[float], slurm: Optional[int],
                 cpu_count: Optional[int]) -> int:
    """The CPUs this process may keep busy: the smallest of what each limit grants, at least 1.
    A fractional quota rounds down: one thread too many costs far more than one too few."""
    known = [n for n in (len(affinity) if affinity else None, cpu_count, slurm) if n]
    if cgroup:
        known.append(max(1, math.floor(cgroup)))
    return max(1, min(known)) if known else 1


def _positive_int(env: Mapping[str, str], name: str) -> Optional[int]:
    raw = env.get(name)
    if raw in (None, ""):
        return None
    try:
        n = int(raw)
    except ValueError:
        from nefs.errors import FitnefError

        raise FitnefError(f"{name}={raw!r}: must be a positive integer") from None
    if n < 1:
        from nefs.errors import FitnefError

        raise FitnefError(f"{name}={n}: must be a positive integer")
    return n


@dataclass(frozen=True)
class ThreadPlan:
    threads: Optional[int]   # None: leave PyTorch's own choice (OMP_NUM_THREADS given by the user)
    allowed: int
    sharing: int             # fits counted as sharing the allowed CPUs: at least FITNEF_CONCURRENT_JOBS
    why: str
    adapts: bool = False     # the count follows the fits and the load beside this one (tasks/cpu_share.py)


def plan_threads(env: Mapping[str, str], affinity: Optional[set], cgroup: Optional[float],
                 cpu_count: Optional[int]) -> ThreadPlan:
    """The starting plan: a count fixed by the user (FITNEF_NUM_THREADS, OMP_NUM_THREADS) is kept as it is;
    otherwise the allowed CPUs split between FITNEF_CONCURRENT_JOBS fits (1 when unset), and adapting."""
    allowed = allowed_cpus(affinity, cgroup, slurm_cpus(env), cpu_count)
    explicit = _positive_int(env, THREADS_ENV)
    if explicit is not None:
        return ThreadPlan(explicit, allowed, 1, f"{THREADS_ENV}={explicit}")
    sharing = _positive_int(env, JOBS_ENV)
    if sharing is None and env.get("OMP_NUM_THREADS"):
        return ThreadPlan(None, allowed, 1, f"OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
    sharing = sharing or 1
    return ThreadPlan(max(1, allowed // sharing), allowed, sharing,
                      f"{allowed} CPUs allowed" + (f", shared by {sharing} processes ({JOBS_ENV})" if sharing > 1 else ""),
                      adapts=True)


def _affinity() -> Optional[set]:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def machine_plan(env: Mapping[str, str] = os.environ) -> ThreadPlan:
    """The plan for this process on this machine."""
    return plan_threads(env, _affinity(), cgroup_cpus(), os.cpu_count())


_share = None   # this process's CpuShare once use_allowed_cpus has run with an adapting plan


def use_allowed_cpus(env: Mapping[str, str] = os.environ) -> ThreadPlan:
    """Size PyTorch's thread pools by ``machine_plan`` and, unless the user fixed the count, keep sizing
    them by the fits and the load beside this one (``recheck_between_steps``); call it first thing in an
    entry point."""
    import torch

    global _share
    plan = machine_plan(env)
    threads = plan.threads
    if plan.adapts:
        from .cpu_share import CpuShare

        affinity = _affinity()
        if _share is None:
            _share = CpuShare(plan.allowed, plan.sharing, affinity, quota_limited=affinity is not None
                              and plan.allowed < len(affinity))
        threads = _share.start()
        _inductor_follows_thread_count()
    if threads is not None:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # only allowed before the first inter-op work; harmless if too late
            pass
    why = _share.why() if plan.adapts else plan.why
    log.info("CPU threads: %d (%s)", torch.get_num_threads(), why)
    return plan


def recheck_between_steps() -> None:
    """Between two steps: take this fit's current share of the CPUs (cheap: a clock read, a look at the
    registry and /proc at most every CpuShare.interval_s seconds). Nothing when the count is fixed."""
    if _share is not None:
        _share.recheck()


def share_cpus_between_steps(on_step):
    """``on_step`` (the engine's per-step hook) preceded by ``recheck_between_steps``."""
    def hook(*args, **kwargs):
        recheck_between_steps()
        if on_step is not None:
            on_step(*args, **kwargs)

    return hook


def _inductor_follows_thread_count() -> None:
    """Compiled CPU kernels read the thread count when they run, not when they were compiled: otherwise a
    fit compiled while it had 1 thread would keep its kernels serial after the others end (and the other way
    round, 2 threads baked into a fit that now has 1 core)."""
    try:
        import torch._inductor.config as inductor_config

        inductor_config.cpp.dynamic_threads = True
    except Exception:  # noqa: BLE001 - no inductor: nothing is compiled
        pass


def concurrent_jobs(launcher_cfg: Mapping, num_jobs: int, allowed: int) -> int:
    """How many jobs of a multirun run at once on this machine: joblib-style launchers run ``n_jobs``
    at a time (negative: joblib's cpus + 1 + n_jobs), at most as many as there are jobs; other launchers
    (basic: one after the other; SLURM: other machines, sized by SLURM_CPUS_PER_TASK) count as 1."""
    target = str(launcher_cfg.get("_target_", ""))
    n_jobs = launcher_cfg.get("n_jobs")
    if "joblib" not in target.lower() or n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    if n_jobs < 0:
        n_jobs = max(1, allowed + 1 + n_jobs)
    return max(1, min(n_jobs, num_jobs))


def count_jobs(task_overrides) -> int:
    """Jobs Hydra's basic sweeper makes of these command-line overrides (e.g. a=1,2 b=range(3): 6)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(task_overrides))
    return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None))


class ShareCpus(Callback):
    """At the start of a multirun whose jobs run at once here, tell each job how many share the CPUs
    (``FITNEF_CONCURRENT_JOBS``, inherited by the launcher's worker processes). Without it a joblib job would
    keep the ``OMP_NUM_THREADS`` joblib sets (cpus // n_jobs, however few jobs there are) instead of its
    share of the registry (tasks/cpu_share.py), which the count only bounds from below."""

    def on_multirun_start(self, config, **kwargs) -> None:
        if JOBS_ENV in os.environ or THREADS_ENV in os.environ:
            return  # the user said
        try:
            num_jobs = count_jobs(config.hydra.overrides.task)
        except Exception:  # noqa: BLE001 - another sweeper's syntax: assume many
            num_jobs = 1 << 30
        n = concurrent_jobs(config.hydra.launcher, num_jobs, machine_plan().allowed)
        if n > 1:
            os.environ[JOBS_ENV] = str(n)
            log.info("%d jobs at once on this machine: %s=%d", n, JOBS_ENV, n)
