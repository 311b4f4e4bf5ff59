"""Where a store lives: its write lock, who holds it, and path problems as one-line errors.

A user who points ``task.nef_dir`` at a place that cannot hold a store (``/proc/x``, a plain file, a full
disk) must hear so at once, not wait forever on a lock that can never be created or read a traceback.
And a lock that another process keeps must say which process, so the user knows whom to wait for.

The lock is an OS file lock (``filelock``; ``flock`` on Linux), which the kernel releases when its
holder dies, so a killed fit never blocks the next one. Beside it, a small side file names the
current holder (pid, host, command, since when); it is only ever read to explain a timeout.
"""
import errno
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import FitnefError

# Seconds to wait for another process's lock before giving up (writes hold it for a chunk's write only); the
# ``lock_timeout`` argument of nefs.store (NefStore.create_or_open, open_store) sets another.
DEFAULT_TIMEOUT_S = 300.0

# OS errors that mean "this place cannot hold a store", as the words a user needs
_PATH_ERRORS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a plain file is where a folder should be",
    errno.EEXIST: "a plain file is where a folder should be",
    errno.ENOENT: "no such file or folder",
}

# ... of which these, raised while writing into an existing store, are about the place, not a bug
_WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _holder_info() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv)[:300],
            "since": time.strftime("%Y-%m-%d %H:%M:%S")}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists, but belongs to someone else (or cannot be asked)
    return True


def describe_holder(holder_file: Path) -> str:
    """Who the side file says holds the lock, for an error message."""
    try:
        h = json.loads(Path(holder_file).read_text())
    except (OSError, ValueError):
        return "an unknown process (no holder file)"
    where = f"pid {h.get('pid')} on {h.get('host')}"
    if h.get("host") == socket.gethostname() and not pid_alive(h.get("pid", -1)):
        where += " (no longer running: the lock is held by another process now, or the file system's locks are stale)"
    return f"{where} since {h.get('since')}: {h.get('command')!r}"


class StoreLock:
    """Exclusive lock of one store, reentrant in one process, with a timeout that names the holder."""

    def __init__(self, lock_file: Path, what: str, timeout: float = DEFAULT_TIMEOUT_S):
        self.lock_file = Path(lock_file)
        self.holder_file = self.lock_file.with_name(self.lock_file.name + ".holder")
        self.what = what
        self.timeout = float(timeout)
        self._lock = FileLock(str(self.lock_file), timeout=self.timeout)

    def __enter__(self):
        with path_errors(self.what):
            first = not self._lock.is_locked
            if first:  # filelock retries a lock file it cannot create until the timeout: fail at once
                self.lock_file.parent.mkdir(parents=True, exist_ok=True)
                os.close(os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644))
            try:
                self._lock.acquire()
            except Timeout:
                raise FitnefError(
                    f"store {self.what} is locked by {describe_holder(self.holder_file)}; waited "
                    f"{self.timeout:g} s; if that process is gone, delete "
                    f"{self.lock_file}") from None
            if first:
                try:
                    self.holder_file.write_text(json.dumps(_holder_info()))
                except OSError:
                    pass  # only used to explain a timeout
        return self

    def __exit__(self, typ, value, tb):
        self._lock.release()
        if isinstance(value, OSError) and value.errno in _WRITE_ERRORS:
            raise FitnefError(f"task.nef_dir={self.what}: cannot write the store: {_PATH_ERRORS[value.errno]}; "
                              f"rows already marked done are whole: fix it and rerun to resume") from None
        return False


@contextmanager
def path_errors(what):
    """OS errors about the store's place (full disk, no permission, a file for a folder) become one line."""
    try:
        yield
    except OSError as e:
        reason = _PATH_ERRORS.get(e.errno)
        if reason is None:
            raise
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        raise FitnefError(f"task.nef_dir={what}: cannot write the store: {reason}{where}") from None


def check_store_path(path, probe_bytes: int = 1 << 16) -> None:
    """Fail at once, before any work, if ``path`` cannot become or be a store folder: a plain file in the
    way, a folder we may not write to, or no space for even a small file. Creates nothing that stays."""
    path = Path(path).absolute()
    what = str(path)
    existing = path
    while not existing.exists():
        if existing.is_symlink():  # a dangling link
            raise FitnefError(f"task.nef_dir={what}: {existing} is a link to nothing")
        existing = existing.parent
    if not existing.is_dir():
        raise FitnefError(f"task.nef_dir={what}: {existing} is a plain file, where the store needs a folder")
    # the lock file lives beside the store, so its parent must be writable too
    probe_dir = existing if existing != path else path.parent
    probe = probe_dir / f".fitnef-probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * probe_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        reason = _PATH_ERRORS[e.errno] if e.errno in _WRITE_ERRORS else e.strerror
        raise FitnefError(f"task.nef_dir={what}: cannot create files in {probe_dir}: {reason}") from None
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    if existing == path and not os.access(path, os.W_OK):
        raise FitnefError(f"task.nef_dir={what}: cannot write the store: permission denied ({path})")


LOCK_NAME = ".fitnef.lock"


def store_lock(path, timeout: float = DEFAULT_TIMEOUT_S) -> StoreLock:
    """The store's write lock. It lives beside the store folder, not in it: creating a store
    (zarr mode "w") empties the folder, and must not delete the lock it holds. It times out naming
    its holder, and OS errors inside it (full disk, no permission) are one-line errors (nefs/locking.py)."""
    path = Path(path).absolute()
    return StoreLock(path.parent / f".{path.name}{LOCK_NAME}", what=str(path), timeout=timeout)
