"""Fixed chunks: each NeF keeps its slot until the chunk ends (torch.optim on the stacked tensors, one step
count). A chunk larger than the engine's unit (its one compiled shape) runs as consecutive units, the last one
padded with copies of its last NeF (dropped)."""
from typing import Callable, Optional

import numpy as np
import torch

from .inflight import InFlight, LoopState, UnitProgress
from .modality import Params
from .slot_optim import StackedOptimizer
from .slots import ChunkResult, take_rows


def fit_chunk(fitter, params: Params, problem, resume: Optional[InFlight] = None,
              rows: Optional[np.ndarray] = None) -> ChunkResult:
    """Fit one chunk; ``resume``: a snapshot of this chunk (``pause``) to continue from."""
    n = next(iter(params.values())).shape[0]
    at = None if resume is None else resume.units
    if at is not None and fitter.unit is None:
        fitter.unit = at.unit   # the shape the snapshot was taken with
    unit = fitter._unit_for(n, problem)
    if at is not None and at.unit != unit:
        raise ValueError(f"snapshot of {at.unit}-NeF units, this fitter runs {unit}")
    if n == unit:
        return _fit_unit(fitter, params, problem, resume, lambda: UnitProgress(unit), rows)
    parts = []
    dev = next(iter(params.values())).device
    for part, lo in enumerate(range(0, n, unit)):
        idx = torch.arange(lo, min(lo + unit, n))
        if at is not None and part < at.part:   # finished before the snapshot
            r = at.parts[part]
            parts.append((ChunkResult({k: v.to(dev) for k, v in r["params"].items()}, r["metric"].to(dev),
                                      r["steps"].to(dev), 0.0), len(idx)))
            continue
        pad = torch.cat([idx, idx[-1:].repeat(unit - len(idx))])  # copies of the last NeF, dropped
        done = [{"params": r.params, "metric": r.metric, "steps": r.steps} for r, _ in parts]
        res = _fit_unit(fitter, {k: v[pad.to(dev)] for k, v in params.items()}, take_rows(problem, pad.to(dev)),
                        resume if at is not None and part == at.part else None,
                        lambda part=part, done=done: UnitProgress(unit, part, done), rows)
        parts.append((res, len(idx)))
    return ChunkResult(
        params={k: torch.cat([r.params[k][:m] for r, m in parts]) for k in params},
        metric=torch.cat([r.metric[:m] for r, m in parts]), steps=torch.cat([r.steps[:m] for r, m in parts]),
        train_s=sum(r.train_s for r, _ in parts), warmup_s=sum(r.warmup_s for r, _ in parts))


def _fit_unit(fitter, params: Params, problem, resume: Optional[InFlight],
              progress: Callable[[], UnitProgress], rows: Optional[np.ndarray]) -> ChunkResult:
    """One chunk, no refills: each NeF's result is kept from the step it finished at."""
    params = {k: v.detach().clone() for k, v in params.items()}
    n = next(iter(params.values())).shape[0]
    device = next(iter(params.values())).device
    out = {k: v.clone() for k, v in params.items()}
    metric = torch.zeros(n, device=device)
    steps = torch.zeros(n, dtype=torch.long, device=device)
    live = np.ones(n, dtype=bool)
    if resume is not None:   # the unit as it stood: params, NeFs already finished (kept), who is live
        kept = resume.units.keep
        for k in params:
            params[k].copy_(resume.loop.params[k])
            out[k].copy_(kept["params"][k])
        metric.copy_(kept["metric"])
        steps.copy_(kept["steps"])
        live = resume.loop.live.copy()

    def keep(slots: np.ndarray, res: ChunkResult) -> np.ndarray:
        idx = torch.as_tensor(slots, device=device)
        for k in out:
            out[k][idx] = res.params[k]
        metric[idx], steps[idx] = res.metric.to(metric.dtype), res.steps
        return slots[:0]

    opt = StackedOptimizer(fitter.optimizer, params, fitter.schedule(0), **_fast_impl(fitter.optimizer, device))
    if resume is not None:
        opt.load_state_dict(resume.loop.opt)

    def wrap(loop: LoopState) -> InFlight:
        at = progress()
        at.keep = {"params": out, "metric": metric, "steps": steps}
        return InFlight(loop, units=at, rows=rows)

    train_s, warmup = fitter._train(params, problem, opt, live, keep, None if resume is None else resume.loop, wrap)
    return ChunkResult(out, metric, steps, train_s, warmup)


def _fast_impl(optimizer, device: torch.device) -> dict:
    """The fastest implementation the optimizer offers: one fused kernel on CUDA (Adam, AdamW, SGD),
    else the multi-tensor (foreach) loop."""
    import inspect

    target = getattr(optimizer, "func", optimizer)
    try:
        accepted = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return {}
    if device.type == "cuda" and "fused" in accepted:
        return {"fused": True}
    return {"foreach": True} if "foreach" in accepted else {}
