"""Preemption that loses nothing, and bounded loss on hard kills.

Clusters stop jobs with a signal first (SLURM: SIGTERM, then SIGKILL after its grace time; submitit:
SIGUSR2, or the ``--signal`` the job asked for). While rows are fitted, SIGTERM, SIGUSR1 and SIGUSR2 only
set a flag; at the end of the step the fit saves the NeFs in flight (params, optimizer state, per-slot
steps, NeFs already finished in the chunk) beside the store, in ``<store>/.inflight/<start>-<end>.pt``
(temp file + rename), writes its finished rows and stops with ``Preempted`` (exit 75, EX_TEMPFAIL: "try
again"). Under submitit its own handler (checkpoint and requeue) runs after that save. Ctrl-C (SIGINT)
does the same at the end of the step and exits 130; a second Ctrl-C stops at once (finished rows are still
written; the NeFs in flight then resume from the last ``checkpoint_every`` save, if any). A hard kill gives
no warning: ``task.train.checkpoint_every`` saves the same state every that many steps.

The rerun (the same command) checks that the state is this store's (identity, layout), for this range
and mode, and still has pending rows, and continues it from its step: the randomness of a step is keyed
by (seed, NeF, step), so a continued NeF ends as an uninterrupted one. Anything else is ignored with a
warning and those NeFs are fitted from scratch: never a wrong row. The file goes once its rows are done.
"""
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from nefs.errors import Preempted
from nefs.store import diff_keys

from .identity import upgrade_identity

log = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")
FORMAT = "fitnef-inflight/1"


def _to_torch(x):
    """numpy arrays -> tensors (all a ``weights_only`` load accepts), recursively."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x.copy())
    if isinstance(x, dict):
        return {k: _to_torch(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_torch(v) for v in x]
    return x


class InFlightFile:
    """The saved state of one process range's NeFs in flight."""

    def __init__(self, store_path, start: int, end: int):
        self.path = Path(store_path) / ".inflight" / f"{start}-{end}.pt"

    def save(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            torch.save(_to_torch(state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)   # a kill during the save leaves the previous state whole

    def read(self) -> Optional[dict]:
        if not self.path.exists():
            return None
        try:
            return torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a truncated or foreign file is ignored, never trusted
            log.warning("ignoring in-flight state %s: unreadable (%s: %s)", self.path, type(e).__name__, str(e)[:120])
            return None

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        for tmp in self.path.parent.glob(f"{self.path.name}.*.tmp") if self.path.parent.exists() else ():
            tmp.unlink(missing_ok=True)


class Preemption:
    """The engine's ``pause`` hook for one fit: saves the state every ``checkpoint_every`` steps and on a
    preemption signal, after which it stops the fit (``Preempted``)."""

    def __init__(self, plan, writer, fitter, stream: bool):
        tr = plan.cfg.task.train
        self.file = InFlightFile(writer.store.path, plan.start, plan.end)
        self.writer, self.fitter, self.stream = writer, fitter, stream
        self.every = int(tr.get("checkpoint_every") or 0)
        self.meta = {"format": FORMAT, "identity": json.loads(json.dumps(plan.identity)),
                     "layout": plan.layout.to_json(), "range": [plan.start, plan.end],
                     "mode": "stream" if stream else "chunk"}
        self.range = (plan.start, plan.end)
        self.rows: Optional[np.ndarray] = None   # the chunk in flight (fixed chunks)
        self.signum: Optional[int] = None
        self.steps = 0             # training steps this process ran
        self.saves, self.save_s = 0, 0.0
        self.started = time.perf_counter()
        self._previous: dict = {}

    # -- signals -------------------------------------------------------------------------------------
    def __enter__(self):
        if threading.current_thread() is threading.main_thread():   # signal handlers live there only
            for name in SIGNALS:
                sig = getattr(signal, name, None)
                if sig is not None:
                    self._previous[sig] = signal.signal(sig, self._on_signal)
        self.fitter.pause = self
        return self

    def __exit__(self, *exc):
        self.fitter.pause = None
        self._restore()
        return False

    def _on_signal(self, signum, frame) -> None:
        if signum == signal.SIGINT and self.signum == signal.SIGINT:
            raise KeyboardInterrupt   # Ctrl-C twice: the user will not wait for the step
        if self.signum is None:
            if signum == signal.SIGINT:
                log.warning("Ctrl-C: stopping at the end of this step to save the NeFs in flight (Ctrl-C again: "
                            "stop at once)")
            else:
                log.warning("%s received: stopping at the end of this step", signal.Signals(signum).name)
        self.signum = self.signum or signum

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    # -- the engine's pause hook ----------------------------------------------------------------------
    def __call__(self, snapshot: Callable[[], dict]) -> None:
        self.steps += 1
        if self.signum is None and not (self.every and self.steps % self.every == 0):
            return
        t = time.perf_counter()
        engine = snapshot()
        if self.signum is None and not np.any(engine["live"]):   # the chunk ends with this step: nothing to save
            return
        self.writer.flush()   # finished rows first: a state never holds less than the store
        state = {**self.meta, "rows": self.rows, "engine": engine, "saved_at": time.time(),
                 "signal": None if self.signum is None else signal.Signals(self.signum).name}
        self.file.save(state)
        self.saves += 1
        self.save_s += time.perf_counter() - t
        if self.signum is not None:
            self._stop(state["engine"])

    def _stop(self, engine: dict) -> None:
        interrupted = self.signum == signal.SIGINT
        name = "Ctrl-C" if interrupted else signal.Signals(self.signum).name
        previous = self._previous.get(self.signum)
        self.fitter.pause = None
        self._restore()
        log.warning("%s: in-flight state saved to %s after %d steps", name, self.file.path, self.steps)
        if callable(previous) and not interrupted:   # e.g. submitit's checkpoint-and-requeue, the state now safe
            previous(self.signum, None)
        raise Preempted(f"stopped by {name} at {_step_text(engine)}: finished rows written, "
                        f"{_pending_count(engine, self.rows if not self.stream else None)} NeFs in flight saved to "
                        f"{self.file.path}; "
                        f"rerun the same command to resume", interrupted=interrupted)

    # -- the rerun -------------------------------------------------------------------------------------
    def resume(self, pending: np.ndarray):
        """(engine state, rows of the chunk in flight or None, the other pending rows) from a saved state
        that fits this run; (None, None, pending) if there is none or it does not fit."""
        if not len(pending):   # nothing left to fit: any state is stale
            self.file.clear()
            return None, None, pending
        state = self.file.read()
        if state is None:
            return None, None, pending
        why = self._mismatch(state)
        if why:
            log.warning("ignoring in-flight state %s: %s; its NeFs are fitted from the start", self.file.path, why)
            return None, None, pending
        engine, left = state["engine"], set(pending.tolist())
        if self.stream:
            slot_row = np.asarray(engine["slot_row"], dtype=np.int64).copy()
            slot_row[[r not in left for r in slot_row.tolist()]] = -1   # done since (or idle): free slots
            engine["slot_row"], engine["live"] = slot_row, slot_row >= 0
            held = slot_row[slot_row >= 0]
            rows = None
        else:
            rows = np.asarray(state["rows"], dtype=np.int64)
            held = rows if any(r in left for r in rows.tolist()) else rows[:0]
        if not len(held):
            log.info("in-flight state %s: its rows are done; removed", self.file.path)
            self.file.clear()
            return None, None, pending
        log.info("resuming %d NeFs from %s (in-flight state %s, saved %s)", _pending_count(engine, rows),
                 _step_text(engine), self.file.path, f"on {state['signal']}" if state.get("signal") else "by checkpoint_every")
        self.resumed = True
        return engine, rows, np.setdiff1d(pending, held)

    def _mismatch(self, state: dict) -> str:
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            return "not a fitnef in-flight state"
        saved = upgrade_identity(state["identity"])   # a state saved by an earlier version, in today's keys
        if saved != self.meta["identity"]:
            diffs = "; ".join(diff_keys(saved, self.meta["identity"])).replace(" (store) ", " (saved) ")
            return f"made for another config ({diffs[:300]})"
        if state["layout"] != self.meta["layout"]:
            return "made for another NeF layout"
        if list(state["range"]) != list(self.meta["range"]):
            return f"made for range {list(state['range'])}, this run fits {list(self.meta['range'])}"
        if state["mode"] != self.meta["mode"]:
            return (f"saved by {'continuous batching' if state['mode'] == 'stream' else 'fixed chunks'}, this run "
                    f"uses {'continuous batching' if self.stream else 'fixed chunks'}")
        rows = np.asarray(state["engine"]["slot_row"] if self.stream else state["rows"])
        rows = rows[rows >= 0]
        lo, hi = self.range
        if len(rows) and (rows.min() < lo or rows.max() >= hi):
            return f"holds rows outside [{lo}, {hi})"
        unit = state["engine"].get("unit", len(state["engine"].get("slot_row", [])))
        if self.fitter.unit is not None and int(unit) != self.fitter.unit:
            return f"saved with {unit} NeFs per call, this run already uses {self.fitter.unit}"
        return ""

    def finish(self) -> None:
        """All rows of this run written: the state has nothing left to resume."""
        self.file.clear()
        if self.saves:
            wall = time.perf_counter() - self.started
            log.info("checkpoint_every=%d: %d saves of the in-flight state, %.3f s in all (%.1f ms each, %.2f%% of "
                     "the fit)", self.every, self.saves, self.save_s, 1e3 * self.save_s / self.saves,
                     100 * self.save_s / wall if wall else 0.0)
        log.info("trained %d steps in this run", self.steps)

    resumed = False


def _live(engine: dict) -> np.ndarray:
    return np.asarray(engine["live"], dtype=bool)


def _pending_count(engine: dict, rows) -> int:
    """NeFs of the state not finished yet: in its slots, and (fixed chunks) in the chunk's later units."""
    if rows is None:
        return int((np.asarray(engine["slot_row"]) >= 0).sum())
    later = max(0, len(rows) - int(engine["unit"]) * (int(engine["part"]) + 1))
    return int(_live(engine).sum()) + later


def _step_text(engine: dict) -> str:
    steps = np.asarray(engine["host_steps"])[_live(engine)]
    if not len(steps):
        return "step -"
    lo, hi = int(steps.min()), int(steps.max())
    return f"step {lo}" if lo == hi else f"steps {lo}-{hi}"
