"""The hot path: fit NeFs with a vmapped, compiled gradient.

Loss = sum over NeFs of each NeF's own loss, so the gradient a NeF receives is exactly the one it
would get alone; optimizers act elementwise on the stacked tensors, so nothing couples NeFs.
The per-NeF gradient ``vmap(grad_and_value(loss))`` is compiled once for one chunk shape (the
"unit"); other chunks are split into / padded to that shape, so nothing recompiles between chunks.

Two loops share it:
- ``ChunkFitter.fit``: a fixed chunk, torch.optim on the stacked tensors, early-stopped NeFs frozen.
- ``ChunkFitter.fit_stream``: continuous batching for early stop — a NeF that reaches the target
  frees its slot for the next NeF of the range, so the device stays full. Needs per-slot optimizer
  state (nefs/slot_optim.py).
"""
import copy
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Protocol

import numpy as np
import torch
from torch.func import functional_call, grad_and_value

from .fused import fused_grad_fn
from .slot_optim import slot_optimizer
from .stack import Params, stacked_forward

log = logging.getLogger(__name__)
# Inductor's C++ toolchain probe warns "No CUDA runtime is found" on every CPU-only compile: noise here.
logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


class Problem(Protocol):
    """What a modality gives the engine for a chunk (see tasks/image/modality.py)."""

    per_nef_fields: tuple   # attribute names of tensors with one row per NeF
    # optional ``fused_loss``: "mse" | "bce_logits", the loss's name for the fused step (nefs/fused)

    def train_batch(self, step):
        """(coords, targets, batched) for a step (int, or (N,) per-NeF steps): coords (P, D) shared,
        or (N, P, D) per NeF when ``batched``."""

    @staticmethod
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ONE NeF (pure; called under vmap)."""

    def metric(self, forward: Callable, params: Params) -> torch.Tensor:
        """(N,) quality of each NeF, higher is better (PSNR, IoU)."""


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
    """

    def __init__(self, template: torch.nn.Module, optimizer: Callable, schedule: Callable[[int], float],
                 num_steps: int, check_every: int = 10, target: Optional[float] = None, compile: bool = True,
                 micro_batch: Optional[int] = None, on_step: Optional[Callable] = None, kernel: str = "torch"):
        self.template = template
        self.optimizer = optimizer
        self.schedule = schedule
        self.num_steps = int(num_steps)
        self.check_every = max(int(check_every), 1)
        self.target = target
        self.compile = compile
        self.micro_batch = micro_batch
        self.kernel = kernel   # torch | fused | auto: the gradient's implementation (nefs/fused/select.py)
        # on_step(step, loss (N,), params, problem) after each optimizer step, outside the timed step
        # (loggers; None: no call, no sync)
        self.on_step = on_step
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
            fn = _Compiled(fn) if self.compile else fn
            self._grad_fns[k] = fused_grad_fn(self.template, problem, batched, self.kernel, fallback=fn)
        return self._grad_fns[k]

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
        """Run one training step; the very first one (compilation) is timed apart."""
        if self._warm:
            fn()
            return 0.0
        t = time.perf_counter()
        fn()
        self._warm = True
        self._warmup_s = time.perf_counter() - t
        return self._warmup_s

    # -- fixed chunks --------------------------------------------------------------------------
    def fit(self, params: Params, problem) -> ChunkResult:
        n = next(iter(params.values())).shape[0]
        unit = self._unit_for(n, problem)
        if n == unit:
            return self._fit_unit(params, problem)
        parts = []
        for lo in range(0, n, unit):
            idx = torch.arange(lo, min(lo + unit, n))
            pad = torch.cat([idx, idx[-1:].repeat(unit - len(idx))])  # copies of the last NeF, dropped
            dev = next(iter(params.values())).device
            res = self._fit_unit({k: v[pad.to(dev)] for k, v in params.items()}, take_rows(problem, pad.to(dev)))
            parts.append((res, len(idx)))
        return ChunkResult(
            params={k: torch.cat([r.params[k][:m] for r, m in parts]) for k in params},
            metric=torch.cat([r.metric[:m] for r, m in parts]), steps=torch.cat([r.steps[:m] for r, m in parts]),
            train_s=sum(r.train_s for r, _ in parts), warmup_s=sum(r.warmup_s for r, _ in parts))

    def _fit_unit(self, params: Params, problem) -> ChunkResult:
        names = list(params)
        params = {k: params[k].detach().clone() for k in names}
        n = params[names[0]].shape[0]
        device = params[names[0]].device
        opt = self.optimizer([params[k] for k in names], lr=self.schedule(0), **_fast_impl(self.optimizer, device))
        done = torch.zeros(n, dtype=torch.bool, device=device)
        frozen = {k: v.clone() for k, v in params.items()} if self.target is not None else None
        steps = torch.full((n,), self.num_steps, dtype=torch.long, device=device)
        warmup = 0.0
        t0 = time.perf_counter()
        last = {}
        for step in range(self.num_steps):
            def one_step():
                coords, targets, batched = problem.train_batch(step)
                grads, last["loss"] = self.grad_fn(problem, batched)(params, coords, targets)
                for g in opt.param_groups:
                    g["lr"] = self.schedule(step)
                for k in names:
                    params[k].grad = grads[k]
                opt.step()

            warmup += self._timed_step(one_step)
            trained = step + 1
            if self.on_step is not None:
                self.on_step(trained, last["loss"], params, problem)
            if self.target is not None and (trained % self.check_every == 0 or trained == self.num_steps):
                metric = problem.metric(self.forward(), params)
                newly = (metric >= self.target) & ~done
                if newly.any():  # freeze these NeFs' results at this step
                    for k in names:
                        frozen[k][newly] = params[k][newly]
                    steps[newly] = trained
                    done |= newly
                if bool(done.all()):
                    break
        for p in params.values():
            p.grad = None
        if self.target is not None:
            for k in names:
                frozen[k][~done] = params[k][~done]
            params = frozen
        _sync(device)
        train_s = time.perf_counter() - t0 - warmup
        return ChunkResult(params, problem.metric(self.forward(), params), steps, train_s, warmup)

    # -- continuous batching -------------------------------------------------------------------
    def fit_stream(self, rows: np.ndarray, make: Callable, slots: int,
                   emit: Callable[[np.ndarray, ChunkResult], None]) -> float:
        """Fit ``rows`` through ``slots`` slots, refilling a slot as soon as its NeF finishes.

        make(rows) -> (params, problem) for those NeF rows; emit(rows, result) receives finished
        NeFs. Returns the training time (warm-up excluded).
        """
        queue: Iterator[int] = iter(rows.tolist())
        sizing = make(rows[:1])[1] if self.unit is None else None  # a sample problem, first use only
        slots = self._unit_for(min(slots, len(rows)), sizing)

        def take(k):
            got = [r for _, r in zip(range(k), queue)]
            return np.asarray(got, dtype=np.int64)

        first = take(slots)
        pad = np.concatenate([first, np.repeat(first[-1:], slots - len(first))])
        params, problem = make(pad)
        params = {k: v.detach().clone() for k, v in params.items()}
        device = next(iter(params.values())).device
        slot_row = np.concatenate([first, np.full(slots - len(first), -1)])   # -1: idle slot
        opt = slot_optimizer(self.optimizer, params, compile=self.compile)
        lr_table = torch.tensor([self.schedule(s) for s in range(self.num_steps)], device=device)
        forward = self.forward()
        warmup, it = 0.0, 0
        host_steps = np.zeros(slots, dtype=np.int64)
        t0 = time.perf_counter()
        last = {}
        while (slot_row >= 0).any():
            def one_step():
                local = opt.step_count  # steps each slot's NeF has taken so far
                coords, targets, batched = problem.train_batch(local)
                grads, last["loss"] = self.grad_fn(problem, batched)(params, coords, targets)
                opt.step(grads, lr_table[local.clamp_max(self.num_steps - 1)])

            warmup += self._timed_step(one_step)
            it += 1
            if self.on_step is not None:
                self.on_step(it, last["loss"], params, problem)
            host_steps += 1  # a host copy of opt.step_count: deciding when to check needs no sync
            # each NeF is checked at its own steps (multiples of check_every, and its last step),
            # exactly as it would be in a chunk of its own
            due_np = ((host_steps % self.check_every == 0) | (host_steps >= self.num_steps)) & (slot_row >= 0)
            if not due_np.any():
                continue
            local = opt.step_count
            metric = problem.metric(forward, params)
            due = torch.as_tensor(due_np, device=device)
            reached = metric >= self.target if self.target is not None else torch.zeros_like(due)
            finished = due & ((local >= self.num_steps) | reached)
            if not bool(finished.any()):
                continue
            fin = torch.nonzero(finished).flatten()
            fin_np = fin.cpu().numpy()
            emit(slot_row[fin_np], ChunkResult({k: v[fin].clone() for k, v in params.items()}, metric[fin],
                                               local[fin].clone(), 0.0))
            new = take(len(fin_np))
            slot_row[fin_np] = -1
            if len(new):
                refill = fin[: len(new)]
                p_new, prob_new = make(new)
                for k in params:
                    params[k][refill] = p_new[k]
                assign_rows(problem, refill, prob_new)
                opt.reset(refill)
                host_steps[fin_np[: len(new)]] = 0
                slot_row[fin_np[: len(new)]] = new
        _sync(device)
        return time.perf_counter() - t0 - warmup


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
