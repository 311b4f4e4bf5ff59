"""Preemption loses nothing (SIGTERM mid-chunk, rerun = uninterrupted fit), a hard kill loses at most
``checkpoint_every`` steps, and a state that does not fit the run is ignored (tasks/preempt.py)."""
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from nefs import open_store
from nefs.errors import Preempted
from tasks import progress
from tasks.fitting import fit

ROOT = Path(__file__).resolve().parents[1]

# 32 NeFs in chunks of 16, each chunk as two compiled calls of 8 (a snapshot of a chunk in its second part)
FIXED = ["task.train.num_steps=20", "task.train.end_idx=32", "task.train.num_parallel_nefs=16",
         "task.train.micro_batch=8", "task.train.compile=false", "scheduler.value=1e-2", "task.log.progress=false"]
# continuous batching: 24 NeFs through 8 slots, some stop early at the target
STREAM = ["task.train.num_steps=20", "task.train.end_idx=24", "task.train.num_parallel_nefs=8",
          "task.train.target=17", "task.train.check_every=5", "task.train.compile=false", "scheduler.value=1e-2",
          "task.log.progress=false"]

# runs `python -m tasks.fit ARGS` and sends itself PREEMPT_SIGNAL (default SIGTERM; PREEMPT_TIMES times) PREEMPT_DELAY
# seconds after training step PREEMPT_AT (0: right away, before the step's checks and saves)
DRIVER = """
import os, runpy, signal, sys, threading
from tasks import progress
at, seen, orig = int(os.environ["PREEMPT_AT"]), [0], progress.Progress.on_step
sig = getattr(signal, os.environ.get("PREEMPT_SIGNAL", "SIGTERM"))
delay = float(os.environ.get("PREEMPT_DELAY", "0"))
times = int(os.environ.get("PREEMPT_TIMES", "1"))
def on_step(self, step, loss):
    seen[0] += 1
    if seen[0] == at:
        if delay:
            threading.Timer(delay, os.kill, (os.getpid(), sig)).start()
        else:
            for _ in range(times):
                os.kill(os.getpid(), sig)
    return orig(self, step, loss)
progress.Progress.on_step = on_step
sys.argv = ["tasks.fit", *sys.argv[1:]]
runpy.run_module("tasks.fit", run_name="__main__")
"""


def _cfg(store, *overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=[f"task.nef_dir={store}", *overrides])


def _trained(text: str) -> int:
    return int(re.search(r"trained (\d+) steps in this run", text).group(1))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted fits of FIXED and STREAM: (store params, steps the fit trained)."""
    out = {}
    for name, args in (("fixed", FIXED), ("stream", STREAM)):
        store = tmp_path_factory.mktemp("ref") / name
        handler = _Capture()
        logging.getLogger("tasks.preempt").addHandler(handler)
        logging.getLogger("tasks.preempt").setLevel(logging.INFO)
        try:
            fit(_cfg(store, *args))
        finally:
            logging.getLogger("tasks.preempt").removeHandler(handler)
        out[name] = (np.asarray(open_store(store).params[:]), _trained(handler.text))
    return out


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.text = ""

    def emit(self, record):
        self.text += record.getMessage() + "\n"


def _drive(args, store, run_dir, **env):
    """DRIVER in a subprocess: the fit of ``args`` signalled as the PREEMPT_* variables in ``env`` say."""
    return subprocess.run([sys.executable, "-c", DRIVER, *args, f"task.nef_dir={store}", f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **{k: str(v) for k, v in env.items()}})


def _signal_at(monkeypatch, at: int, sig) -> None:
    """In this process: send ``sig`` to itself after training step ``at``."""
    seen, orig = [0], progress.Progress.on_step

    def on_step(self, step, loss):
        seen[0] += 1
        if seen[0] == at:
            os.kill(os.getpid(), sig)
        return orig(self, step, loss)

    monkeypatch.setattr(progress.Progress, "on_step", on_step)


def _run(args, store, run_dir, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "tasks.fit", *args, f"task.nef_dir={store}", f"hydra.run.dir={run_dir}"],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300, **kw)


@pytest.mark.slow
@pytest.mark.parametrize("mode,at,resumed", [("fixed", 30, "resuming 8 NeFs from step 10 "),
                                             ("stream", 25, "resuming 8 NeFs from steps ")])
def test_sigterm_mid_chunk_then_rerun_equals_uninterrupted_fit(tmp_path, reference, mode, at, resumed):
    args, store = (FIXED if mode == "fixed" else STREAM), tmp_path / "store"
    first = _drive(args, store, tmp_path / "run1", PREEMPT_AT=at)
    assert first.returncode == Preempted.exit_code, first.stderr[-2000:]
    assert "preempted: stopped by SIGTERM at step" in first.stderr and "Traceback" not in first.stderr
    assert (store / ".inflight" / f"0-{32 if mode == 'fixed' else 24}.pt").exists()
    assert open_store(store).done.sum() < (32 if mode == "fixed" else 24)
    again = _run(args, store, tmp_path / "run2")
    assert again.returncode == 0, again.stderr[-2000:]
    log = again.stdout + again.stderr
    assert resumed in log
    params, steps = reference[mode]
    assert at + _trained(log) == steps          # the rerun trained only the remaining steps
    s = open_store(store)
    n = 32 if mode == "fixed" else 24
    assert s.done[:n].all() and s.done.sum() == n
    assert np.abs(np.asarray(s.params[:n]) - params[:n]).max() <= 1e-6
    assert not (store / ".inflight" / f"0-{n}.pt").exists()     # its rows are done: the state is gone


@pytest.mark.slow
def test_ctrl_c_saves_the_nefs_in_flight_and_a_second_ctrl_c_stops_at_once(tmp_path, reference):
    store = tmp_path / "store"
    first = _drive(FIXED, store, tmp_path / "run1", PREEMPT_AT=30, PREEMPT_SIGNAL="SIGINT")
    assert first.returncode == 130, first.stderr[-2000:]
    assert "interrupted: stopped by Ctrl-C at step 10: finished rows written, 8 NeFs in flight saved" in first.stderr
    assert "Traceback" not in first.stderr and (store / ".inflight" / "0-32.pt").exists()
    again = _run(FIXED, store, tmp_path / "run2")
    assert again.returncode == 0 and "resuming 8 NeFs from step 10 " in again.stdout + again.stderr
    assert np.abs(np.asarray(open_store(store).params[:32]) - reference["fixed"][0][:32]).max() <= 1e-6
    # twice, in the second chunk: no waiting for the step, no state saved; the first chunk's rows are written
    store2 = tmp_path / "store2"
    twice = _drive(FIXED, store2, tmp_path / "run3", PREEMPT_AT=50, PREEMPT_SIGNAL="SIGINT", PREEMPT_TIMES=2)
    assert twice.returncode == 130 and "interrupted; rerun the same command to resume" in twice.stderr, twice.stderr[-2000:]
    assert "Traceback" not in twice.stderr and not (store2 / ".inflight" / "0-32.pt").exists()
    assert open_store(store2).done[:16].all() and not open_store(store2).done[16:].any()


@pytest.mark.slow
def test_sigkill_at_random_moments_then_reruns_lose_nothing(tmp_path, reference):
    args, store = [*FIXED, "task.train.checkpoint_every=3"], tmp_path / "store"
    rng = random.Random(15)
    logs = []
    for kill in range(3):   # a random step of each run, then a random moment of the next few ms: mid-step/save/write
        at, delay = rng.randint(4, 25), rng.uniform(0.0, 0.01)
        run = tmp_path / f"run{kill}"
        proc = _drive(args, store, run, PREEMPT_AT=at, PREEMPT_SIGNAL="SIGKILL", PREEMPT_DELAY=delay)
        assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
        logs.append((run / "fit.log").read_text())
        s = open_store(store)                                    # whatever the moment, the store opens
        rows = np.flatnonzero(s.done)
        assert np.abs(np.asarray(s.params.get_orthogonal_selection((rows, slice(None)))) -
                      reference["fixed"][0][rows]).max(initial=0) <= 1e-6
    final = _run(args, store, tmp_path / "final")
    assert final.returncode == 0, final.stderr[-2000:]
    logs.append(final.stdout + final.stderr)
    assert sum("resuming" in text for text in logs[1:]) >= 2, "reruns did not continue the checkpoints"
    s = open_store(store)
    assert s.done[:32].all() and s.done.sum() == 32
    assert np.abs(np.asarray(s.params[:32]) - reference["fixed"][0][:32]).max() <= 1e-6
    for name in ("params", "psnr", "steps", "done", "labels"):   # every chunk file reads back
        assert np.asarray(s.group[name][:]).shape[0] == len(s)
    assert not (store / ".inflight" / "0-32.pt").exists()


def _preempted_state(tmp_path, monkeypatch, *overrides) -> dict:
    """The state a SIGTERM at step 30 of FIXED leaves (in this process)."""
    _signal_at(monkeypatch, 30, signal.SIGTERM)
    with pytest.raises(Preempted, match="stopped by SIGTERM at step 10"):
        fit(_cfg(tmp_path / "a", *FIXED, *overrides))
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL     # the default handler is back
    return torch.load(tmp_path / "a" / ".inflight" / "0-32.pt", weights_only=True)


@pytest.mark.slow
def test_mismatching_in_flight_state_is_ignored_with_a_warning(tmp_path, monkeypatch, reference, caplog):
    state = _preempted_state(tmp_path, monkeypatch)
    other = {**state, "identity": {**state["identity"], "task": {**state["identity"]["task"], "seeds": [7]}}}
    cases = {"another config": ("made for another config (task.seeds: [7] (saved) != [0] (now))", other),
             "another range": ("made for range [0, 32], this run fits [0, 16]", state),
             "corrupt": ("unreadable", None)}
    for name, (needle, planted) in cases.items():
        store = tmp_path / name.replace(" ", "_")
        path = store / ".inflight" / "0-16.pt"
        path.parent.mkdir(parents=True)
        if planted is None:
            path.write_bytes(b"PK\x03\x04 not a whole file")
        else:
            torch.save({**planted, "range": planted["range"] if name == "another range" else [0, 16]}, path)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tasks.preempt"):
            summary = fit(_cfg(store, *FIXED, "task.train.end_idx=16"))
        assert f"ignoring in-flight state {path}: {needle}" in caplog.text, name
        assert "resuming" not in caplog.text
        assert summary.fitted == 16
        got = np.asarray(open_store(store).params[:16])
        assert np.abs(got - reference["fixed"][0][:16]).max() <= 1e-6, name   # fitted from scratch, as they should be
        assert not path.exists()
    shutil.rmtree(tmp_path / "a")


@pytest.mark.slow
def test_a_launchers_own_handler_runs_after_the_state_is_saved(tmp_path, monkeypatch, reference):
    """submitit's checkpoint-and-requeue handler (here a stand-in on SIGUSR1) is chained, not replaced."""
    store, calls = tmp_path / "s", []

    def launcher(signum, frame):   # submitit requeues the job, then exits
        calls.append((signum, (store / ".inflight" / "0-32.pt").exists(), int(open_store(store).done.sum())))
        raise SystemExit(-1)

    previous = signal.signal(signal.SIGUSR1, launcher)
    try:
        _signal_at(monkeypatch, 50, signal.SIGUSR1)
        with pytest.raises(SystemExit):
            fit(_cfg(store, *FIXED))
        assert calls == [(signal.SIGUSR1, True, 16)]   # state saved and the first chunk's rows written first
        assert signal.getsignal(signal.SIGUSR1) is launcher
        monkeypatch.undo()
        fit(_cfg(store, *FIXED))
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert np.abs(np.asarray(open_store(store).params[:32]) - reference["fixed"][0][:32]).max() <= 1e-6


@pytest.mark.slow
def test_an_in_flight_state_saved_before_a_key_was_added_resumes(tmp_path, monkeypatch, reference, caplog):
    """A state saved before task.train.matmul_precision entered the identity is read as fp32 (tasks/identity.py
    IMPLICIT_KEYS, through upgrade_identity): the rerun resumes it; without the table it would be ignored, naming the key."""
    state = _preempted_state(tmp_path, monkeypatch, "task.train.matmul_precision=highest")
    del state["identity"]["task"]["train"]["matmul_precision"]
    torch.save(state, tmp_path / "a" / ".inflight" / "0-32.pt")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with monkeypatch.context() as m, caplog.at_level(logging.INFO, logger="tasks.preempt"):
        m.setattr("tasks.identity.IMPLICIT_KEYS", {})
        fit(_cfg(tmp_path / "b", *FIXED, "task.train.matmul_precision=highest"))
    assert ("made for another config (task.train.matmul_precision: '<missing>' (saved) != 'highest' (now))"
            in caplog.text)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tasks.preempt"):
        fit(_cfg(tmp_path / "a", *FIXED, "task.train.matmul_precision=highest"))
    assert "resuming 8 NeFs from step 10 " in caplog.text and "ignoring" not in caplog.text
    got = np.asarray(open_store(tmp_path / "a").params[:32])
    assert np.abs(got - reference["fixed"][0][:32]).max() <= 1e-6
