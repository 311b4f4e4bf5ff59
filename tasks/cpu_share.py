"""This fit's share of the CPUs, while other fits and other busy processes come and go.

A fit's step runs on OpenMP threads that meet at a barrier after every kernel: when they outnumber the free
cores, every barrier waits for a thread that is not running, and two fits each taking both cores of a
2-core machine ran 4.7x slower together than one after the other (issue 24). So a fit takes

    (allowed CPUs - CPUs kept busy by processes that are not fits) split between the fits sharing them

threads, and looks again between steps (every ``interval_s``), so the share follows fits that start and end.
The fits are those of the registry (tasks/fit_registry.py) whose CPUs overlap this one's, at least
``floor`` (FITNEF_CONCURRENT_JOBS). The remainder of an uneven split goes to the fits that started first
(their rank in the registry), so 3 fits on 4 cores take 2, 1, 1 threads, not 1 each. When there are more
fits than free cores each takes one thread: single-threaded processes share cores by time slices, without
barriers, which costs no more than running them one after the other.

The busy CPUs of other processes are what /proc/stat counts busy on this fit's CPUs minus what the fits of
the registry used (their /proc/<pid>/stat), averaged over the checks (a moving average with hysteresis, so a
short burst from a shell does not flip the count). Not measured when a cgroup quota or SLURM, not the
affinity mask, limits the CPUs: the mask's other CPUs then belong to other jobs.
"""
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from .fit_registry import FitRegistry

log = logging.getLogger(__name__)


def split(free: int, fits: int, rank: int) -> int:
    """Threads of the fit of this rank (0 = started first) when ``fits`` share ``free`` cores: at least 1."""
    fits = max(1, fits)
    return max(1, free // fits + (1 if rank < free % fits else 0))


class BusyCpus:
    """CPUs kept busy by processes that are not fits, from /proc (Linux): ``sample`` returns the average
    over the time since the previous sample (None at the first)."""

    def __init__(self, cpus: Optional[Iterable[int]], proc: Path = Path("/proc"),
                 clock: Callable[[], float] = time.monotonic):
        self.cpus = None if cpus is None else {f"cpu{c}" for c in cpus}
        self.proc, self.clock = Path(proc), clock
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._last: Optional[tuple] = None   # (time, busy ticks, {pid: ticks})

    def _busy_ticks(self) -> Optional[int]:
        try:
            lines = (self.proc / "stat").read_text().splitlines()
        except OSError:
            return None
        busy = 0
        for line in lines:
            fields = line.split()
            if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu":
                continue
            if self.cpus is not None and fields[0] not in self.cpus:
                continue
            # user nice system idle iowait irq softirq steal ...: all but idle and iowait
            values = [int(v) for v in fields[1:9]]
            busy += sum(values) - values[3] - values[4]
        return busy

    def _pid_ticks(self, pid: int) -> Optional[int]:
        try:
            fields = (self.proc / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])   # utime, stime (all its threads)
        except (OSError, IndexError, ValueError):
            return None

    def sample(self, fit_pids: Iterable[int]) -> Optional[float]:
        now, busy = self.clock(), self._busy_ticks()
        if busy is None:
            return None
        ticks = {pid: t for pid in fit_pids if (t := self._pid_ticks(pid)) is not None}
        last, self._last = self._last, (now, busy, ticks)
        if last is None or now <= last[0]:
            return None
        t0, busy0, ticks0 = last
        elapsed = (now - t0) * self.hz
        # a fit new since the last sample: all its time falls (about) in this interval
        fits = sum(min(t - ticks0.get(pid, 0), elapsed * max(1, len(self.cpus or ()))) for pid, t in ticks.items())
        return max(0.0, (busy - busy0 - fits) / elapsed)


class CpuShare:
    """This process's thread count as one of the fits on this machine (tasks/threads.py makes one)."""

    interval_s = 1.0     # between looks at the registry and /proc: a look costs ~0.1 ms, a step ~5-50 ms
    smoothing = 0.5      # weight of the newest busy-CPU sample in the moving average
    hysteresis = 0.7     # the busy count changes when the average is this far from it

    def __init__(self, allowed: int, floor: int = 1, affinity: Optional[Iterable[int]] = None,
                 quota_limited: bool = False, registry: Optional[FitRegistry] = None,
                 busy: Optional[BusyCpus] = None, clock: Callable[[], float] = time.monotonic,
                 set_threads: Optional[Callable[[int], None]] = None):
        self.allowed, self.floor = allowed, max(1, floor)
        self.cpus = frozenset(affinity) if affinity else frozenset(range(allowed))
        self.registry = registry if registry is not None else FitRegistry()
        self.busy = None if quota_limited else (busy if busy is not None else BusyCpus(affinity, clock=clock))
        self.clock = clock
        self._set_threads = set_threads
        self.threads: Optional[int] = None
        self.fits, self.rank = 1, 0
        self.foreign, self._average, self._samples = 0, 0.0, 0
        self._next = 0.0

    # -- what the share is ---------------------------------------------------------------------
    def _look(self) -> List[int]:
        """Count the fits sharing these CPUs and this one's rank among them; return their pids."""
        live = [f for f in self.registry.live() if f.shares(self.cpus)]
        names = [f.name for f in live]
        self.fits = max(self.floor, len(live) if self.registry.name in names else len(live) + 1)
        self.rank = names.index(self.registry.name) if self.registry.name in names else len(names)
        return [f.pid for f in live]

    def _update_foreign(self, pids) -> None:
        if self.busy is None:
            return
        sample = self.busy.sample(pids)
        if sample is None:
            return
        if self._samples == 0:     # the first covers the start-up (seconds): taken as it is
            self._average = sample
        else:
            self._average += self.smoothing * (sample - self._average)
        self._samples += 1
        if abs(self._average - self.foreign) >= self.hysteresis:
            self.foreign = min(self.allowed - 1, max(0, round(self._average)))

    def target(self) -> int:
        return split(max(1, self.allowed - self.foreign), self.fits, self.rank)

    def why(self) -> str:
        parts = [f"{self.allowed} CPUs allowed"]
        if self.foreign:
            parts.append(f"{self.foreign} busy with other processes")
        if self.fits > 1:
            parts.append(f"shared by {self.fits} fits")
        return ", ".join(parts)

    # -- acting on it ------------------------------------------------------------------------------
    def start(self) -> int:
        """Join the registry and return the first share (no busy-CPU figure yet: that needs an interval)."""
        self.registry.join(self.cpus)
        pids = self._look()
        if self.busy is not None:
            self.busy.sample(pids)
        self._next = self.clock() + self.interval_s
        self.threads = self.target()
        return self.threads

    def recheck(self) -> bool:
        """Between steps: take the current share; True (and one log line) when it changed, in threads or in
        what they are shared with."""
        now = self.clock()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        said = (self.threads, self.why())
        pids = self._look()
        self._update_foreign(pids)
        threads = self.target()
        if threads != self.threads:
            (self._set_threads or _torch_set_threads)(threads)
            self.threads = threads
        if (threads, self.why()) == said:
            return False
        log.info("CPU threads: %d (%s)", threads, self.why())
        return True


def _torch_set_threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)
