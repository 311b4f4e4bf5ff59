"""The hot path: fit NeFs with a vmapped, compiled gradient, in one training loop.

Loss = sum over NeFs of each NeF's own loss, so the gradient a NeF receives is exactly the one it
would get alone; optimizers act elementwise on the stacked tensors, so nothing couples NeFs.
The per-NeF gradient ``vmap(grad_and_value(loss))`` is compiled once for one chunk shape (the
"unit"); other chunks are split into / padded to that shape, so nothing recompiles between chunks.

One loop (``ChunkFitter._train``) runs a set of slots, each holding one NeF: every step trains all
slots, each NeF is checked at its own steps (multiples of ``check_every`` and its last step), and a
NeF that is finished (its steps done, or its metric at the target) is handed out with its parameters
of that step. What happens to its slot is the caller's:
- ``ChunkFitter.fit``: a fixed chunk; the slot idles (torch.optim on the stacked tensors: one step count).
- ``ChunkFitter.fit_stream``: continuous batching; the slot is refilled with the next NeF of the range at
  once, so the device stays full (per-slot optimizer state, nefs/slot_optim.py).
"""
import copy
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np
import torch
from torch.func import functional_call, grad_and_value

from .fused import fused_grad_fn
from .modality import Metric, Params, Problem  # noqa: F401  (Problem: the protocol chunks follow)
from .precision import AtPrecision, resolve_matmul_precision
from .slot_optim import StackedOptimizer, slot_optimizer
from .stack import stacked_forward

log = logging.getLogger(__name__)


def take_rows(problem, index: torch.Tensor):
    """A copy of ``problem`` restricted to (or repeating) the NeFs at ``index``."""
    out = copy.copy(problem)
    for f in problem.per_nef_fields:
        setattr(out, f, getattr(problem, f)[index])
    return out


def assign_rows(problem, slots: torch.Tensor, other) -> None:
    """Put ``other``'s NeFs into ``problem``'s rows ``slots`` (in place)."""
    for f in problem.per_nef_fields:
        getattr(problem, f)[slots] = getattr(other, f)


@dataclass
class ChunkResult:
    params: Params          # final (or early-stopped) params, stacked
    metric: torch.Tensor    # (N,)
    steps: torch.Tensor     # (N,) steps each NeF was trained for
    train_s: float          # time in the training loop, warm-up excluded
    warmup_s: float = 0.0   # first step of the first chunk: compilation


class ChunkFitter:
    """Fits NeFs sharing one template architecture, optimizer and schedule.

    micro_batch: at most this many NeFs per compiled call; larger chunks are fitted as consecutive
    sub-chunks. On a CPU, throughput peaks once a chunk's activations fit in cache, so a big
    ``num_parallel_nefs`` must not make it slower. None: no limit (the GPU default); "cache": size it
    from the NeF's width and points per step (``cache_sized_batch``).
    metric: which way the target is reached (default: higher is better).
    """

    def __init__(self, template: torch.nn.Module, optimizer: Callable, schedule: Callable[[int], float],
                 num_steps: int, check_every: int = 10, target: Optional[float] = None, compile: bool = True,
                 micro_batch: Optional[int] = None, on_step: Optional[Callable] = None,
                 metric: Optional[Metric] = None, kernel: str = "torch", matmul_precision: str = "highest"):
        self.template = template
        self.optimizer = optimizer
        self.schedule = schedule
        self.num_steps = int(num_steps)
        self.check_every = max(int(check_every), 1)
        self.target = target
        self.metric = metric or Metric("metric")
        self.compile = compile
        self.micro_batch = micro_batch
        self.kernel = kernel   # torch | fused | auto: the gradient's implementation (nefs/fused/select.py)
        # highest | high | medium: the train step's matmul inputs, fp32 / tf32 / bf16 (nefs/precision.py)
        self.matmul_precision = resolve_matmul_precision(matmul_precision)
        # on_step(step, loss (N,), params, problem) after each optimizer step, outside the timed step
        # (loggers, progress; None: no call, no sync)
        self.on_step = on_step
        # pause(snapshot) after each step (and its finished NeFs): may call snapshot() -> the loop's state, to save
        # it (preemption, checkpoints), and may raise to stop; None: no call
        self.pause: Optional[Callable[[Callable[[], dict]], None]] = None
        self.unit: Optional[int] = None   # the one compiled chunk shape, fixed by the first call
        self._grad_fns: dict = {}
        self._warm = False
        self._warmup_s = 0.0

    # -- compiled pieces ---------------------------------------------------------------------
    def grad_fn(self, problem, batched: bool):
        """vmap(grad_and_value(loss)) over NeFs; compiled when asked, eager if compiling fails; or the fused
        Triton step (``kernel``)."""
        k = (type(problem), batched)
        if k not in self._grad_fns:
            fn = self.grad_fn_eager(problem, batched)
            fn = self.at_precision(_Compiled(fn) if self.compile else fn)
            self._grad_fns[k] = fused_grad_fn(self.template, problem, batched, self.kernel, fallback=fn,
                                              matmul_precision=self.matmul_precision)
        return self._grad_fns[k]

    def at_precision(self, fn):
        """A torch grad fn run at ``matmul_precision`` (torch's setting around each call; nefs/precision.py)."""
        return AtPrecision(fn, self.matmul_precision, next(self.template.parameters()).device)

    def grad_fn_eager(self, problem, batched: bool = False):
        """The per-NeF gradient, never compiled (also for probes that try many shapes)."""
        template, loss = self.template, type(problem).loss  # loss is pure: safe to compile per type

        def nef_loss(p, x, y):
            return loss(functional_call(template, p, (x,)), y)

        return torch.vmap(grad_and_value(nef_loss), in_dims=(0, 0 if batched else None, 0))

    def forward(self, batched: bool = False):
        return stacked_forward(self.template, batched)

    def _unit_for(self, n: int, problem) -> int:
        if self.unit is None:
            cap = self.micro_batch
            if cap == "cache":
                coords, _, _ = problem.train_batch(0)
                cap = cache_sized_batch(self.template, coords.shape[-2])
            self.unit = min(n, cap or n)
        return self.unit

    @property
    def warmup_s(self) -> float:
        return self._warmup_s

    def _timed_step(self, fn):
        """Run one training step; the very first one (compilation) is timed apart and announced."""
        if self._warm:
            fn()
            return 0.0
        if self.compile:
            log.info("compiling the training step (torch.compile; the first step waits for it)")
        t = time.perf_counter()
        fn()
        self._warm = True
        self._warmup_s = time.perf_counter() - t
        if self.compile:
            log.info("training step compiled in %.1f s", self._warmup_s)
        return self._warmup_s

    # -- the training loop -------------------------------------------------------------------------
    def _train(self, params: Params, problem, opt, live: np.ndarray,
               on_finish: Callable[[np.ndarray, ChunkResult], np.ndarray], resume: Optional[dict] = None,
               extra: Optional[Callable[[], dict]] = None) -> tuple:
        """Train the slots of ``params`` until no slot is ``live``; returns (training time, warm-up time).

        on_finish(slots, result) gets the NeFs that finished at this step (their params cloned) and
        returns the slots it refilled in place (params and problem rows): those start again at step 0,
        which needs an optimizer with per-slot state. Slots neither live nor refilled idle.
        resume: the loop's own part of a snapshot (per-slot steps, whether they are uniform) to continue from;
        after every step ``self.pause`` (if set) gets a function that snapshots the loop (plus ``extra()``,
        the caller's part), to save it and perhaps stop (it may raise).
        """
        device = next(iter(params.values())).device
        forward = self.forward()
        slots = len(live)
        host_steps = np.zeros(slots, dtype=np.int64)   # steps per slot, kept on the host: no sync to decide
        uniform = True                                 # all slots at one step (no refill yet): an int step
        if resume is not None:
            host_steps, uniform = np.asarray(resume["host_steps"], dtype=np.int64).copy(), bool(resume["uniform"])
        if opt.per_slot:
            lr_table = torch.tensor([self.schedule(s) for s in range(self.num_steps)], device=device)
        warmup, it, last = 0.0, 0, {}

        def snapshot() -> dict:
            return {"host_steps": host_steps.copy(), "uniform": uniform, "live": live.copy(), "params": params,
                    "opt": opt.state_dict(), **(extra() if extra is not None else {})}

        t0 = time.perf_counter()
        while live.any():
            def one_step():
                local = int(host_steps[0]) if uniform else opt.step_count
                coords, targets, batched = problem.train_batch(local)
                grads, last["loss"] = self.grad_fn(problem, batched)(params, coords, targets)
                if opt.per_slot:
                    opt.step(grads, lr_table[opt.step_count.clamp_max(self.num_steps - 1)])
                else:
                    opt.step(grads, self.schedule(local))

            warmup += self._timed_step(one_step)
            it += 1
            host_steps += 1
            if self.on_step is not None:
                self.on_step(it, last["loss"], params, problem)
            due = self._due(host_steps, live, uniform)
            if due is not None:
                metric = problem.metric(forward, params)
                finished = due & (host_steps >= self.num_steps)
                if self.target is not None:
                    finished |= due & self.metric.reached(metric, self.target).cpu().numpy()
                if finished.any():
                    fin = np.flatnonzero(finished)
                    idx = torch.as_tensor(fin, device=device)
                    live[fin] = False
                    refilled = on_finish(fin, ChunkResult({k: v[idx].clone() for k, v in params.items()},
                                                          metric[idx], torch.as_tensor(host_steps[fin], device=device),
                                                          0.0))
                    if len(refilled):
                        opt.reset(torch.as_tensor(refilled, device=device))
                        host_steps[refilled] = 0
                        live[refilled] = True
                        uniform = False
            if self.pause is not None:
                self.pause(snapshot)
        opt.release()
        _sync(device)
        return time.perf_counter() - t0 - warmup, warmup

    def _due(self, host_steps: np.ndarray, live: np.ndarray, uniform: bool) -> Optional[np.ndarray]:
        """The slots to check at this step (their steps done, or a check step with a target); None: none."""
        if uniform:  # the common case, without array work: one step for every slot
            s = int(host_steps[0])
            if not (s >= self.num_steps or (self.target is not None and s % self.check_every == 0)):
                return None
            return live.copy()
        due = (host_steps >= self.num_steps) & live
        if self.target is not None:
            due |= (host_steps % self.check_every == 0) & live
        return due if due.any() else None

    # -- fixed chunks --------------------------------------------------------------------------
    def fit(self, params: Params, problem, resume: Optional[dict] = None) -> ChunkResult:
        """Fit one chunk; ``resume``: a snapshot of this chunk (``pause``) to continue from."""
        n = next(iter(params.values())).shape[0]
        if resume is not None and self.unit is None:
            self.unit = int(resume["unit"])   # the shape the snapshot was taken with
        unit = self._unit_for(n, problem)
        if resume is not None and int(resume["unit"]) != unit:
            raise ValueError(f"snapshot of {resume['unit']}-NeF units, this fitter runs {unit}")
        if n == unit:
            return self._fit_unit(params, problem, resume, lambda: {"unit": unit, "part": 0, "parts": []})
        parts = []
        dev = next(iter(params.values())).device
        for part, lo in enumerate(range(0, n, unit)):
            idx = torch.arange(lo, min(lo + unit, n))
            if resume is not None and part < resume["part"]:   # finished before the snapshot
                r = resume["parts"][part]
                parts.append((ChunkResult({k: v.to(dev) for k, v in r["params"].items()}, r["metric"].to(dev),
                                          r["steps"].to(dev), 0.0), len(idx)))
                continue
            pad = torch.cat([idx, idx[-1:].repeat(unit - len(idx))])  # copies of the last NeF, dropped
            done = [{"params": r.params, "metric": r.metric, "steps": r.steps} for r, _ in parts]
            res = self._fit_unit({k: v[pad.to(dev)] for k, v in params.items()}, take_rows(problem, pad.to(dev)),
                                 resume if resume is not None and part == resume["part"] else None,
                                 lambda part=part, done=done: {"unit": unit, "part": part, "parts": done})
            parts.append((res, len(idx)))
        return ChunkResult(
            params={k: torch.cat([r.params[k][:m] for r, m in parts]) for k in params},
            metric=torch.cat([r.metric[:m] for r, m in parts]), steps=torch.cat([r.steps[:m] for r, m in parts]),
            train_s=sum(r.train_s for r, _ in parts), warmup_s=sum(r.warmup_s for r, _ in parts))

    def _fit_unit(self, params: Params, problem, resume: Optional[dict] = None,
                  context: Callable[[], dict] = dict) -> ChunkResult:
        """One chunk, no refills: each NeF's result is kept from the step it finished at."""
        params = {k: v.detach().clone() for k, v in params.items()}
        n = next(iter(params.values())).shape[0]
        device = next(iter(params.values())).device
        out = {k: v.clone() for k, v in params.items()}
        metric = torch.zeros(n, device=device)
        steps = torch.zeros(n, dtype=torch.long, device=device)
        live = np.ones(n, dtype=bool)
        if resume is not None:   # the unit as it stood: params, NeFs already finished (kept), who is live
            for k in params:
                params[k].copy_(resume["params"][k])
                out[k].copy_(resume["keep"]["params"][k])
            metric.copy_(resume["keep"]["metric"])
            steps.copy_(resume["keep"]["steps"])
            live = np.asarray(resume["live"], dtype=bool).copy()

        def keep(slots: np.ndarray, res: ChunkResult) -> np.ndarray:
            idx = torch.as_tensor(slots, device=device)
            for k in out:
                out[k][idx] = res.params[k]
            metric[idx], steps[idx] = res.metric.to(metric.dtype), res.steps
            return slots[:0]

        opt = StackedOptimizer(self.optimizer, params, self.schedule(0), **_fast_impl(self.optimizer, device))
        if resume is not None:
            opt.load_state_dict(resume["opt"])
        train_s, warmup = self._train(params, problem, opt, live, keep, resume,
                                      lambda: {"keep": {"params": out, "metric": metric, "steps": steps}, **context()})
        return ChunkResult(out, metric, steps, train_s, warmup)

    # -- continuous batching -------------------------------------------------------------------
    def fit_stream(self, rows: np.ndarray, make: Callable, slots: int,
                   emit: Callable[[np.ndarray, ChunkResult], None], resume: Optional[dict] = None) -> float:
        """Fit ``rows`` through ``slots`` slots, refilling a slot as soon as its NeF finishes.

        make(rows) -> (params, problem) for those NeF rows; emit(rows, result) receives finished
        NeFs. Returns the training time (warm-up excluded). resume: a snapshot (``pause``) whose slots
        continue first (``slot_row`` -1: a free slot, filled from ``rows`` at once); ``rows`` are then the rest.
        """
        queue: Iterator[int] = iter(rows.tolist())

        def take(k):
            return np.asarray([r for _, r in zip(range(k), queue)], dtype=np.int64)

        if resume is None:
            sizing = make(rows[:1])[1] if self.unit is None else None  # a sample problem, first use only
            slots = self._unit_for(min(slots, len(rows)), sizing)
            first = take(slots)
            slot_row = np.concatenate([first, np.full(slots - len(first), -1)])   # -1: idle slot
            free = np.zeros(0, dtype=np.int64)
        else:
            slot_row = np.asarray(resume["slot_row"], dtype=np.int64).copy()
            slots = len(slot_row)
            if self.unit is None:
                self.unit = slots
            if self.unit != slots:
                raise ValueError(f"snapshot of {slots} slots, this fitter runs {self.unit}")
            free = np.flatnonzero(slot_row < 0)
            new = take(len(free))
            free = free[:len(new)]
            slot_row[free] = new
        held = slot_row[slot_row >= 0]
        pad = np.where(slot_row >= 0, slot_row, held[-1] if len(held) else 0)   # idle slots: copies, never emitted
        params, problem = make(pad)
        params = {k: v.detach().clone() for k, v in params.items()}
        device = next(iter(params.values())).device
        opt = slot_optimizer(self.optimizer, params, compile=self.compile)
        loop = None
        if resume is not None:   # the saved slots as they stood; free slots start fresh NeFs
            kept = torch.as_tensor(np.setdiff1d(np.arange(slots), free), device=device)
            for k in params:
                params[k][kept] = resume["params"][k].to(device)[kept]
            opt.load_state_dict(resume["opt"])
            loop = {"host_steps": np.asarray(resume["host_steps"]).copy(), "uniform": bool(resume["uniform"])}
            if len(free):
                opt.reset(torch.as_tensor(free, device=device))
                loop["host_steps"][free] = 0
                loop["uniform"] = False

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

        return self._train(params, problem, opt, slot_row >= 0, refill, loop,
                           lambda: {"slot_row": slot_row.copy()})[0]


# Activations of one compiled call that a CPU keeps in cache: measured on the 2-core EPYC of
# docs/performance.md, where SIREN-8 peaks at 64 NeFs, MLP-15 at 16-32 and SIREN-32 at 16 (784 points).
CPU_CACHE_BYTES = 1.5 * 2**20


def cache_sized_batch(template: torch.nn.Module, points: int) -> int:
    """NeFs per compiled call whose widest activation (points x width floats) fits CPU_CACHE_BYTES,
    as a power of two in [8, 256]."""
    width = max((p.shape[0] for p in template.parameters() if p.dim() == 2), default=1)
    fit = CPU_CACHE_BYTES / (4 * points * width)
    return int(min(256, max(8, 2 ** round(math.log2(max(fit, 1))))))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


class _Compiled:
    """torch.compile with an eager fallback: a compile failure costs speed, never the run."""

    def __init__(self, fn):
        self.eager = fn
        # experimental: FITNEF_COMPILE_MODE=reduce-overhead replays the step as a CUDA graph
        self.mode = os.environ.get("FITNEF_COMPILE_MODE") or None
        self.compiled = torch.compile(fn, dynamic=False, mode=self.mode)
        self.failed = False
        # Inductor's C++ toolchain probe warns "No CUDA runtime is found" on every CPU-only compile: noise
        logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)

    def __call__(self, *args):
        if not self.failed:
            try:
                if self.mode == "reduce-overhead":
                    torch.compiler.cudagraph_mark_step_begin()
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any backend failure falls back to eager
                self.failed = True
                log.warning("torch.compile failed (%s: %s); running eager", type(e).__name__, str(e)[:200])
        return self.eager(*args)
