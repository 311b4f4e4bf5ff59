"""Path problems of task.nef_dir are one line within seconds; the store's lock names its holder."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nefs import locking
from nefs.errors import FitnefError
from nefs.locking import StoreLock, check_store_path, store_lock

ROOT = Path(__file__).resolve().parents[1]


FIT = ("task.train.end_idx=4", "task.train.num_steps=2", "task.log.progress=false")


def test_unwritable_store_path_fails_at_once_in_one_line(tmp_path, command):
    """At once: the path is checked before the store's lock is waited for (that error would name a holder)."""
    r = command("tasks.fit", *FIT, f"hydra.run.dir={tmp_path / 'run'}", "task.nef_dir=/proc/x")
    assert r.returncode == 2 and "locked by" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and "task.nef_dir=/proc/x" in r.stderr


def test_a_plain_file_where_the_store_folder_should_be(tmp_path, command):
    (tmp_path / "f").write_text("x")
    r = command("tasks.fit", *FIT, f"hydra.run.dir={tmp_path / 'run'}", f"task.nef_dir={tmp_path / 'f'}")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "is a plain file" in r.stderr
    with pytest.raises(FitnefError, match="is a plain file"):
        check_store_path(tmp_path / "f" / "deeper" / "store")
    assert not (tmp_path / "store").exists()


def test_no_space_left_is_one_line(tmp_path, monkeypatch):
    real_open = open

    def full_disk(path, mode="r", *a, **kw):
        if "fitnef-probe" in str(path):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", full_disk)
    with pytest.raises(FitnefError, match="no space left on the device"):
        check_store_path(tmp_path / "store")
    assert list(tmp_path.iterdir()) == []  # the probe left nothing behind


def test_no_space_while_writing_rows_is_one_line_and_rows_stay_undone(tmp_path, monkeypatch):
    from tests.test_store import _make

    store = _make(tmp_path / "s")

    def full(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(type(store.group["params"]), "set_orthogonal_selection", full)
    with pytest.raises(FitnefError, match="no space left on the device.*rerun to resume"):
        store.write_rows(np.array([0, 1]), np.zeros((2, 105)), np.zeros(2), np.zeros(2))
    monkeypatch.undo()
    assert not store.done.any()
    with store_lock(store.path):  # and the lock was released
        pass


_HOLD = """
import sys, time
from nefs.locking import store_lock
with store_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def _holder(store: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", _HOLD, str(store)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.slow
def test_lock_timeout_names_the_holder(tmp_path):
    store = tmp_path / "s"
    p = _holder(store)
    try:
        with pytest.raises(FitnefError, match=rf"locked by pid {p.pid} on .*waited 0.5 s") as e:
            with store_lock(store, timeout=0.5):
                pass
        assert "\n" not in str(e.value)
    finally:
        p.kill()
        p.wait()


@pytest.mark.slow
def test_a_killed_holder_does_not_block(tmp_path):
    store = tmp_path / "s"
    p = _holder(store)
    p.kill()
    p.wait()
    holder = json.loads((tmp_path / ".s.fitnef.lock.holder").read_text())
    assert holder["pid"] == p.pid and "-c" in holder["command"]
    assert not locking.pid_alive(p.pid)
    with store_lock(store, timeout=2):  # the kernel freed the dead process's lock
        assert json.loads((tmp_path / ".s.fitnef.lock.holder").read_text())["pid"] == os.getpid()


def test_describe_holder_says_a_dead_pid_is_gone(tmp_path):
    import socket

    f = tmp_path / "h"
    f.write_text(json.dumps({"pid": 2 ** 22 + 12345, "host": socket.gethostname(), "command": "x", "since": "t"}))
    assert "no longer running" in locking.describe_holder(f)
    assert "unknown process" in locking.describe_holder(tmp_path / "missing")


def test_lock_that_cannot_be_created_fails_at_once():
    """At once: a lock file that cannot be created is a path error, not 30 s of retries ending "locked by"."""
    with pytest.raises(FitnefError, match="cannot write the store"):
        with StoreLock(Path("/proc/.x.fitnef.lock"), "/proc/x", timeout=30):
            pass
