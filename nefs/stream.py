"""Continuous batching: a slot is refilled with the next NeF of the range as soon as its NeF finishes, so
the device stays full (per-slot optimizer state, nefs/slot_optim.py)."""
import dataclasses
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from .inflight import InFlight
from .slot_optim import slot_optimizer
from .slots import ChunkResult, assign_rows


def fit_stream(fitter, rows: np.ndarray, make: Callable, slots: int,
               emit: Callable[[np.ndarray, ChunkResult], None], resume: Optional[InFlight] = None) -> float:
    """Fit ``rows`` through ``slots`` slots, refilling a slot as soon as its NeF finishes.

    make(rows) -> (params, problem) for those NeF rows; emit(rows, result) receives finished
    NeFs. Returns the training time (warm-up excluded). resume: a snapshot (``pause``) whose slots
    continue first (``slot_row`` -1: a free slot, filled from ``rows`` at once); ``rows`` are then the rest.
    """
    queue: Iterator[int] = iter(rows.tolist())

    def take(k):
        return np.asarray([r for _, r in zip(range(k), queue)], dtype=np.int64)

    if resume is None:
        sizing = make(rows[:1])[1] if fitter.unit is None else None  # a sample problem, first use only
        slots = fitter._unit_for(min(slots, len(rows)), sizing)
        first = take(slots)
        slot_row = np.concatenate([first, np.full(slots - len(first), -1)])   # -1: idle slot
        free = np.zeros(0, dtype=np.int64)
    else:
        slot_row = resume.slot_row.copy()
        slots = len(slot_row)
        if fitter.unit is None:
            fitter.unit = slots
        if fitter.unit != slots:
            raise ValueError(f"snapshot of {slots} slots, this fitter runs {fitter.unit}")
        free = np.flatnonzero(slot_row < 0)
        new = take(len(free))
        free = free[:len(new)]
        slot_row[free] = new
    held = slot_row[slot_row >= 0]
    pad = np.where(slot_row >= 0, slot_row, held[-1] if len(held) else 0)   # idle slots: copies, never emitted
    params, problem = make(pad)
    params = {k: v.detach().clone() for k, v in params.items()}
    device = next(iter(params.values())).device
    opt = slot_optimizer(fitter.optimizer, params, compile=fitter.compile)
    loop = None
    if resume is not None:   # the saved slots as they stood; free slots start fresh NeFs
        kept = torch.as_tensor(np.setdiff1d(np.arange(slots), free), device=device)
        for k in params:
            params[k][kept] = resume.loop.params[k].to(device)[kept]
        opt.load_state_dict(resume.loop.opt)
        loop = dataclasses.replace(resume.loop, host_steps=resume.loop.host_steps.copy())
        if len(free):
            opt.reset(torch.as_tensor(free, device=device))
            loop.host_steps[free] = 0
            loop.uniform = False

    def refill(fin: np.ndarray, res: ChunkResult) -> np.ndarray:
        emit(slot_row[fin], res)
        slot_row[fin] = -1
        new = take(len(fin))
        if not len(new):
            return fin[:0]
        into = fin[:len(new)]
        p_new, prob_new = make(new)
        idx = torch.as_tensor(into, device=device)
        for k in params:
            params[k][idx] = p_new[k]
        assign_rows(problem, idx, prob_new)
        slot_row[into] = new
        return into

    return fitter._train(params, problem, opt, slot_row >= 0, refill, loop,
                         lambda state: InFlight(state, slot_row=slot_row.copy()))[0]
