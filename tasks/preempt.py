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
import signal
import threading
import time
from typing import Callable, Optional

import numpy as np

from nefs.errors import Preempted
from nefs.inflight import FORMAT, InFlight, InFlightFile
from nefs.store import diff_keys

from .identity import upgrade_identity

log = logging.getLogger(__name__)

SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT")


class Preemption:
    """The engine's ``pause`` hook for one fit: saves its ``InFlight`` state (nefs/inflight.py) every
    ``checkpoint_every`` steps and on a preemption signal, after which it stops the fit (``Preempted``).

    flush: writes the rows finished so far, called before each save, so that a saved state never leaves out
    finished rows that the store does not have yet (they would be fitted again)."""

    def __init__(self, plan, store_path, flush: Callable[[], None], fitter, stream: bool):
        tr = plan.cfg.task.train
        self.file = InFlightFile(store_path, plan.start, plan.end)
        self.flush, self.fitter, self.stream = flush, fitter, stream
        self.every = int(tr.get("checkpoint_every") or 0)
        self.meta = {"format": FORMAT, "identity": json.loads(json.dumps(plan.identity)),
                     "layout": plan.layout.to_json(), "range": [plan.start, plan.end],
                     "mode": "stream" if stream else "chunk"}
        self.range = (plan.start, plan.end)
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
    def __call__(self, snapshot: Callable[[], InFlight]) -> None:
        self.steps += 1
        if self.signum is None and not (self.every and self.steps % self.every == 0):
            return
        t = time.perf_counter()
        inflight = snapshot()
        if self.signum is None and not inflight.loop.live.any():   # the chunk ends with this step: nothing to save
            return
        self.flush()   # finished rows first: a state never leaves out rows the store lacks
        rows, engine = inflight.record()
        self.file.save({**self.meta, "rows": rows, "engine": engine, "saved_at": time.time(),
                        "signal": None if self.signum is None else signal.Signals(self.signum).name})
        self.saves += 1
        self.save_s += time.perf_counter() - t
        if self.signum is not None:
            self._stop(inflight)

    def _stop(self, inflight: InFlight) -> None:
        interrupted = self.signum == signal.SIGINT
        name = "Ctrl-C" if interrupted else signal.Signals(self.signum).name
        previous = self._previous.get(self.signum)
        self.fitter.pause = None
        self._restore()
        log.warning("%s: in-flight state saved to %s after %d steps", name, self.file.path, self.steps)
        if callable(previous) and not interrupted:   # e.g. submitit's checkpoint-and-requeue, the state now safe
            previous(self.signum, None)
        raise Preempted(f"stopped by {name} at {inflight.step_text()}: finished rows written, "
                        f"{inflight.pending_count()} NeFs in flight saved to {self.file.path}; "
                        f"rerun the same command to resume", interrupted=interrupted)

    # -- the rerun -------------------------------------------------------------------------------------
    def resume(self, pending: np.ndarray):
        """(InFlight state, rows of the chunk in flight or None, the other pending rows) from a saved state
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
        inflight, left = InFlight.from_record(state.get("rows"), state["engine"]), set(pending.tolist())
        if self.stream:
            slot_row = inflight.slot_row
            slot_row[[r not in left for r in slot_row.tolist()]] = -1   # done since (or idle): free slots
            inflight.loop.live = slot_row >= 0
            held, rows = slot_row[slot_row >= 0], None
        else:
            rows = inflight.rows
            held = rows if any(r in left for r in rows.tolist()) else rows[:0]
        if not len(held):
            log.info("in-flight state %s: its rows are done; removed", self.file.path)
            self.file.clear()
            return None, None, pending
        log.info("resuming %d NeFs from %s (in-flight state %s, saved %s)", inflight.pending_count(),
                 inflight.step_text(), self.file.path,
                 f"on {state['signal']}" if state.get("signal") else "by checkpoint_every")
        self.resumed = True
        return inflight, rows, np.setdiff1d(pending, held)

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
