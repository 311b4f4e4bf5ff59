"""What a fit has in flight, typed, and the file that keeps it beside the store.

The engine (nefs/engine.py, chunks.py, stream.py) hands out an ``InFlight`` after each step when asked (its
``pause`` hook): the loop's slots (parameters, optimizer state, per-slot steps, who is live) and either the
fixed chunk's progress (its rows, the unit in flight, NeFs already finished in it) or the continuous batch's
slot-to-row map. A caller saves it (``InFlightFile``, temp file + rename, so a kill during the save leaves the
previous state whole) and gives it back to the engine to continue exactly where it stood. On disk it is plain
tensors and lists in a dict (``record``), all a ``weights_only`` torch.load accepts, in the layout
"fitnef-inflight/1" that earlier versions wrote, so their files still resume.
"""
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

from .modality import Params

log = logging.getLogger(__name__)

FORMAT = "fitnef-inflight/1"


@dataclass
class LoopState:
    """The training loop's slots as they stood after a step."""

    host_steps: np.ndarray      # steps each slot has trained
    uniform: bool               # all slots at one step (no slot refilled yet)
    live: np.ndarray            # slots still training
    params: Params              # stacked, one row per slot
    opt: dict                   # the optimizer's state_dict


@dataclass
class UnitProgress:
    """Fixed chunks: the chunk runs as units of ``unit`` NeFs (the one compiled shape); ``part`` is in flight."""

    unit: int
    part: int = 0
    parts: List[dict] = field(default_factory=list)   # earlier units' results: {params, metric, steps}
    keep: Optional[dict] = None                       # this unit's NeFs finished so far: {params, metric, steps}


@dataclass
class InFlight:
    loop: LoopState
    units: Optional[UnitProgress] = None     # fixed chunks
    rows: Optional[np.ndarray] = None        # fixed chunks: the chunk's NeF rows
    slot_row: Optional[np.ndarray] = None    # continuous batching: the row each slot holds (-1: free)

    @property
    def mode(self) -> str:
        return "stream" if self.slot_row is not None else "chunk"

    def held_rows(self) -> np.ndarray:
        """The NeF rows this state holds (finished in it or not)."""
        rows = self.slot_row if self.mode == "stream" else self.rows
        rows = np.asarray([] if rows is None else rows, dtype=np.int64)
        return rows[rows >= 0]

    def pending_count(self) -> int:
        """NeFs not finished yet: in the slots, and (fixed chunks) in the chunk's later units."""
        if self.mode == "stream":
            return int((np.asarray(self.slot_row) >= 0).sum())
        later = max(0, len(self.rows) - self.units.unit * (self.units.part + 1))
        return int(np.asarray(self.loop.live, dtype=bool).sum()) + later

    def step_text(self) -> str:
        steps = np.asarray(self.loop.host_steps)[np.asarray(self.loop.live, dtype=bool)]
        if not len(steps):
            return "step -"
        lo, hi = int(steps.min()), int(steps.max())
        return f"step {lo}" if lo == hi else f"steps {lo}-{hi}"

    # -- on disk ------------------------------------------------------------------------------------------
    def record(self) -> tuple:
        """(rows, engine dict) as the in-flight file holds them."""
        loop = self.loop
        engine = {"host_steps": loop.host_steps.copy(), "uniform": loop.uniform, "live": loop.live.copy(),
                  "params": loop.params, "opt": loop.opt}
        if self.mode == "stream":
            engine["slot_row"] = self.slot_row.copy()
        else:
            u = self.units
            engine.update(unit=u.unit, part=u.part, parts=u.parts, keep=u.keep)
        return self.rows, engine

    @classmethod
    def from_record(cls, rows, engine: dict) -> "InFlight":
        loop = LoopState(np.asarray(engine["host_steps"], dtype=np.int64).copy(), bool(engine["uniform"]),
                         np.asarray(engine["live"], dtype=bool).copy(), engine["params"], engine["opt"])
        if "slot_row" in engine:
            return cls(loop, slot_row=np.asarray(engine["slot_row"], dtype=np.int64).copy())
        units = UnitProgress(int(engine["unit"]), int(engine["part"]), list(engine["parts"]), engine["keep"])
        return cls(loop, units=units, rows=None if rows is None else np.asarray(rows, dtype=np.int64))


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
    """The saved state of one process range's NeFs in flight: ``<store>/.inflight/<start>-<end>.pt``."""

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
