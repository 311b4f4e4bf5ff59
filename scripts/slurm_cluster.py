"""A throw-away single-node SLURM cluster on this machine, for the SLURM tests and for trying the
``hydra/launcher=submitit_slurm`` commands without a real cluster.

    python -m scripts.slurm_cluster up [STATE_DIR]     # prints `export SLURM_CONF=...`; daemons keep running
    python -m scripts.slurm_cluster down STATE_DIR     # stops the daemons it started

Everything lives in STATE_DIR (slurm.conf, munge key and socket, spool, logs, pid files), nothing in
/etc is changed, and the ports are picked free, so it can run beside a real installation. Clients
find it through ``SLURM_CONF``. Debian's ``slurm-wlm`` and ``munge`` are apt-installed when missing
(needs root), which is what lets CI bring the cluster up on a fresh machine.

Made to work in containers: no cgroups (proctrack/linuxproc, task/none, no accounting), SlurmUser
and SlurmdUser are whoever runs it (root in CI), and the node's address is 127.0.0.1 whatever the
host name resolves to. Without accounting ``sacct`` fails; submitit then reads job state from its
own result files, which is enough for Hydra's launcher.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nefs.errors import FitnefError

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "scancel", "squeue")
DAEMONS = ("munged", "slurmctld", "slurmd")
PARTITION = "debug"


def _which(name: str):
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name, Path("/sbin") / name)
                                       if p.exists()), None)


def ensure_installed(quiet: bool = True) -> None:
    """apt-get install slurm-wlm and munge unless their binaries are already there (then: instant)."""
    if all(_which(b) for b in BINARIES):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise FitnefError("SLURM is not installed and cannot be: installing slurm-wlm and munge needs root and apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = subprocess.DEVNULL if quiet else None
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        r = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:
            raise FitnefError(f"{' '.join(cmd)} failed: {r.stderr.strip().splitlines()[-1:]}")
    missing = [b for b in BINARIES if not _which(b)]
    if missing:
        raise FitnefError(f"installed {' '.join(PACKAGES)} but {missing} are still missing")


def _free_ports(n: int) -> list:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _memory_mb() -> int:
    """MemTotal in MiB, less a margin: slurmd drains a node that reports less memory than configured."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return max(256, int(line.split()[1]) // 1024 - 512)
    return 1024


def slurm_conf(state: Path, *, node: str, cpus: int, memory_mb: int, user: str, ports: list, munge_socket: Path) -> str:
    """One controller and one node, both this machine at 127.0.0.1; one partition holding it."""
    return "\n".join([
        "ClusterName=fitnef",
        f"SlurmctldHost={node}(127.0.0.1)",
        f"SlurmctldPort={ports[0]}",
        f"SlurmdPort={ports[1]}",
        f"SlurmUser={user}",
        f"SlurmdUser={user}",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"StateSaveLocation={state / 'ctld'}",
        f"SlurmdSpoolDir={state / 'spool'}",
        f"SlurmctldPidFile={state / 'slurmctld.pid'}",
        f"SlurmdPidFile={state / 'slurmd.pid'}",
        f"SlurmctldLogFile={state / 'slurmctld.log'}",
        f"SlurmdLogFile={state / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # containers: no cgroups, no accounting daemon
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SwitchType=switch/none",
        "MpiDefault=none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",  # CPUs are the only resource counted: jobs' --mem never blocks
        "SchedulerType=sched/backfill",
        "ReturnToService=2",
        "SlurmdTimeout=300",
        "InactiveLimit=0",
        "KillWait=5",  # seconds between SIGTERM and SIGKILL on scancel / time limit
        "MinJobAge=300",
        "MailProg=/bin/true",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


class Cluster:
    """A running cluster: ``env`` (SLURM_CONF) for clients, ``stop()`` ends its daemons."""

    def __init__(self, state: Path):
        self.state = Path(state)
        self.conf = self.state / "slurm.conf"
        self.partition = PARTITION
        self.env = {"SLURM_CONF": str(self.conf)}

    def pids(self) -> dict:
        """{daemon: pid} of the daemons still running (a pid file whose process is another program is stale)."""
        out = {}
        for d in DAEMONS:
            f = self.state / f"{d}.pid"
            try:
                pid = int(f.read_text().split()[0])
                if d.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    out[d] = pid
            except (OSError, IndexError, ValueError):
                pass
        return out

    def run(self, *cmd, check=True) -> subprocess.CompletedProcess:
        r = subprocess.run(list(cmd), env={**os.environ, **self.env}, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise FitnefError(f"{' '.join(cmd)}: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def node_state(self) -> str:
        r = self.run("sinfo", "-h", "-N", "-o", "%T", check=False)
        return r.stdout.strip() if r.returncode == 0 else ""

    def stop(self) -> None:
        """Cancel the jobs, SIGTERM the daemons this cluster's pid files name, then end what is left of
        its jobs: a job step whose slurmd is gone waits for it for ever (slurmstepd and srun stay)."""
        if self.pids().get("slurmctld"):
            self.run("scancel", "--partition", self.partition, check=False)
            _wait(lambda: not self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip(), 30, "jobs", fail=False)
        pids = self.pids()
        for d in reversed(DAEMONS):
            if d in pids:
                _signal(pids[d], signal.SIGTERM)
        _wait(lambda: not any(_alive(p) for p in pids.values()), 15, "daemons", fail=False)
        for pid in self._job_processes():
            _signal(pid, signal.SIGKILL)

    def _job_processes(self) -> list:
        """This cluster's slurmstepd processes (they inherit its slurmd's SLURM_CONF) and their descendants."""
        mark = f"SLURM_CONF={self.conf}".encode()
        parent, steps = {}, []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if (proc / "cmdline").read_bytes().startswith(b"slurmstepd") and \
                        mark in (proc / "environ").read_bytes().split(b"\0"):
                    steps.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                pass
        out, todo = [], list(steps)
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += [c for c, p in parent.items() if p == pid]
        return out

    def logs(self) -> str:
        parts = []
        for name in ("munged.log", "slurmctld.log", "slurmd.log"):
            f = self.state / name
            if f.exists():
                parts.append(f"--- {name}\n" + "\n".join(f.read_text(errors="replace").splitlines()[-15:]))
        return "\n".join(parts)


def start(state=None, *, cpus=None, timeout: float = 60.0) -> Cluster:
    """Write the config, start munged, slurmctld and slurmd, and return once the node is idle."""
    ensure_installed()
    state = Path(state or tempfile.mkdtemp(prefix="fitnef-slurm-")).absolute()
    for sub in ("ctld", "spool", "munge"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(state / "munge", 0o700)
    cluster = Cluster(state)
    key = state / "munge" / "munge.key"
    if not key.exists():
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
    munge_socket = state / "munge" / "munge.socket"
    node = socket.gethostname().split(".")[0] or "localhost"
    user = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip() or "root"
    cluster.conf.write_text(slurm_conf(state, node=node, cpus=int(cpus or os.cpu_count() or 1),
                                       memory_mb=_memory_mb(), user=user, ports=_free_ports(2),
                                       munge_socket=munge_socket))
    env = {**os.environ, **cluster.env}
    commands = {
        # --force: munged refuses a key or socket dir it does not consider private (e.g. under /tmp)
        "munged": [_which("munged"), "--force", f"--key-file={key}", f"--socket={munge_socket}",
                   f"--pid-file={state / 'munged.pid'}", f"--log-file={state / 'munged.log'}",
                   f"--seed-file={state / 'munge' / 'munged.seed'}"],
        "slurmctld": [_which("slurmctld"), "-f", str(cluster.conf), "-c"],  # -c: no saved state
        "slurmd": [_which("slurmd"), "-f", str(cluster.conf), "-N", node],
    }
    try:
        for name in DAEMONS:
            r = subprocess.run(commands[name], env=env, capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                raise FitnefError(f"{name} did not start: {(r.stderr or r.stdout).strip()}")
            if name == "munged":
                _wait(lambda: munge_socket.exists(), 10, "munged socket")
        _wait(lambda: cluster.node_state() == "idle", timeout, "the node to be idle")
    except Exception as e:
        logs = cluster.logs()
        cluster.stop()
        raise FitnefError(f"SLURM cluster in {state} did not come up: {e}\n{logs}") from None
    return cluster


def _wait(ready, timeout: float, what: str, fail: bool = True) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            if not fail:
                return
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def _signal(pid: int, sig) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("up", "down"):
        print("usage: python -m scripts.slurm_cluster up [STATE_DIR] | down STATE_DIR")
        return 2
    if argv[0] == "down":
        if len(argv) < 2:
            print("usage: python -m scripts.slurm_cluster down STATE_DIR")
            return 2
        Cluster(Path(argv[1])).stop()
        return 0
    t = time.perf_counter()
    cluster = start(argv[1] if len(argv) > 1 else None)
    print(f"# SLURM cluster up in {time.perf_counter() - t:.1f} s, partition {cluster.partition!r}; stop it with:\n"
          f"#   python -m scripts.slurm_cluster down {cluster.state}\n"
          f"export SLURM_CONF={cluster.conf}")
    return 0


if __name__ == "__main__":
    from nefs.errors import reported_as_one_line

    with reported_as_one_line():
        sys.exit(main())
