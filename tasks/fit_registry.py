"""Which fits run on this machine now: a folder of one file per running fit, each locked by its process.

Fits started by hand (two shells, two people, another launcher) know nothing of each other, yet share the
cores; each needs to know how many others run to take its part (tasks/threads.py). A process joins by
creating ``<start time>-<pid>.fit`` (its pid and allowed CPUs, JSON) and holding an exclusive ``flock`` on it
for its lifetime. The kernel drops the lock when the process ends, however it ends (kill -9, OOM, a crash),
so an entry whose lock can be taken belongs to a dead process: readers ignore it and remove it. Names are
unique (start time in ns, pid), so a recycled pid never revives a stale entry, and sort in start order,
which gives each fit a stable rank.

The folder is per user: ``$XDG_RUNTIME_DIR/fitnef-fits`` where that exists (a tmpfs emptied at logout),
else ``<temp dir>/fitnef-fits-<uid>``, mode 0700 and refused if another user owns it. Anything that fails
here (no writable folder, no flock) leaves the fit working alone, as if no other fit ran.
"""
import atexit
import errno
import fcntl
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, List, Mapping, Optional

log = logging.getLogger(__name__)

SUFFIX = ".fit"


def default_folder(env: Mapping[str, str] = os.environ) -> Path:
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_dir() and os.access(runtime, os.W_OK):
        return Path(runtime) / "fitnef-fits"
    return Path(tempfile.gettempdir()) / f"fitnef-fits-{os.getuid()}"


@dataclass(frozen=True)
class Fit:
    """One live entry: the process and the CPUs it may use (None: unreadable, assume it shares ours)."""
    name: str
    pid: int
    cpus: Optional[FrozenSet[int]]

    def shares(self, cpus: FrozenSet[int]) -> bool:
        return self.cpus is None or bool(self.cpus & cpus)


class FitRegistry:
    def __init__(self, folder: Optional[Path] = None):
        self.folder = Path(folder) if folder is not None else default_folder()
        self._fd: Optional[int] = None
        self.name: Optional[str] = None
        self._cpus: Optional[FrozenSet[int]] = None

    def _usable_folder(self) -> bool:
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            st = self.folder.stat()
        except OSError:
            return False
        return st.st_uid == os.getuid() and os.access(self.folder, os.W_OK)

    def join(self, cpus: FrozenSet[int]) -> bool:
        """Enter this process (until it ends or ``leave``); False when the registry cannot be used."""
        if self._fd is not None:
            return True
        if not self._usable_folder():
            log.debug("fit registry %s unusable: this fit counts only itself", self.folder)
            return False
        name = f"{time.time_ns():020d}-{os.getpid()}{SUFFIX}"
        tmp = self.folder / f".{name}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, json.dumps({"pid": os.getpid(), "cpus": sorted(cpus)}).encode())
            os.rename(tmp, self.folder / name)   # readers see only complete, locked entries
        except OSError:
            log.debug("cannot join the fit registry %s", self.folder, exc_info=True)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            return False
        self._fd, self.name, self._cpus = fd, name, frozenset(cpus)
        atexit.register(self.leave)   # tidy on a normal exit; the lock covers every other end
        return True

    def leave(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.folder / self.name)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = self.name = None

    def live(self) -> List[Fit]:
        """The fits running now (this one included when joined), in start order; dead ones' entries removed."""
        try:
            names = sorted(n for n in os.listdir(self.folder) if n.endswith(SUFFIX))
        except OSError:
            return []
        fits = []
        for name in names:
            fit = self._read(name)
            if fit is not None:
                fits.append(fit)
        return fits

    def _read(self, name: str) -> Optional[Fit]:
        path = self.folder / name
        pid = _pid_of(name)
        if name == self.name:
            return Fit(name, pid, self._cpus)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None       # removed meanwhile: ended
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return None
                return Fit(name, pid, _cpus_of(fd))   # locked: its process lives
            try:                  # we got the lock: nobody holds it, the process has ended
                os.unlink(path)
            except OSError:
                pass
            return None
        finally:
            os.close(fd)


def _pid_of(name: str) -> int:
    try:
        return int(name[: -len(SUFFIX)].rsplit("-", 1)[1])
    except (IndexError, ValueError):
        return -1


def _cpus_of(fd: int) -> Optional[FrozenSet[int]]:
    try:
        data = json.loads(os.read(fd, 1 << 16).decode())
        return frozenset(int(c) for c in data["cpus"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
