"""The hot path: fit one chunk of N NeFs with a vmapped, compiled gradient and torch.optim.

Loss = sum over NeFs of each NeF's own loss, so the gradient a NeF receives is exactly the one it
would get alone; the optimizers act elementwise on the stacked tensors, so nothing couples NeFs.
The per-NeF gradient is ``vmap(grad_and_value(loss))``, compiled once per (template, coords kind)
and reused across chunks of the same size.
"""
import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch
from torch.func import functional_call, grad_and_value

from .stack import Params

log = logging.getLogger(__name__)


class Problem(Protocol):
    """What a modality gives the engine for one chunk (see tasks/image/modality.py)."""

    def train_batch(self, step: int):
        """(coords, targets, batched): coords (P, D) shared, or (N, P, D) per NeF when batched."""

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ONE NeF (called under vmap)."""

    def metric(self, forward: Callable, params: Params) -> torch.Tensor:
        """(N,) quality of each NeF, higher is better (PSNR, IoU)."""


@dataclass
class ChunkResult:
    params: Params          # final (or early-stopped) params, stacked
    metric: torch.Tensor    # (N,)
    steps: torch.Tensor     # (N,) steps each NeF was trained for
    train_s: float


class ChunkFitter:
    """Fits chunks of NeFs sharing one template architecture, optimizer and schedule."""

    def __init__(self, template: torch.nn.Module, optimizer: Callable, schedule: Callable[[int], float],
                 num_steps: int, check_every: int = 10, target: Optional[float] = None, compile: bool = True):
        self.template = template
        self.optimizer = optimizer
        self.schedule = schedule
        self.num_steps = int(num_steps)
        self.check_every = max(int(check_every), 1)
        self.target = target
        self.compile = compile
        self._grad_fns: dict = {}

    # -- compiled pieces ---------------------------------------------------------------------
    def _loss_of(self, problem: Problem):
        template = self.template
        loss = type(problem).loss  # a pure function of (pred, target): safe to compile once per type

        def nef_loss(p, x, y):
            return loss(functional_call(template, p, (x,)), y)

        return nef_loss

    def grad_fn(self, problem: Problem, batched: bool):
        """vmap(grad_and_value(loss)) over NeFs; compiled when asked, eager if compiling fails."""
        k = (type(problem), batched)
        if k not in self._grad_fns:
            fn = torch.vmap(grad_and_value(self._loss_of(problem)), in_dims=(0, 0 if batched else None, 0))
            self._grad_fns[k] = _Compiled(fn) if self.compile else fn
        return self._grad_fns[k]

    def forward(self, batched: bool = False):
        from .stack import stacked_forward

        return stacked_forward(self.template, batched)

    # -- the loop ----------------------------------------------------------------------------
    def fit(self, params: Params, problem: Problem, on_check: Optional[Callable] = None) -> ChunkResult:
        names = list(params)
        params = {n: params[n].detach().clone() for n in names}
        opt = self.optimizer([params[n] for n in names], lr=self.schedule(0), **_foreach(self.optimizer))
        n = params[names[0]].shape[0]
        device = params[names[0]].device
        done = torch.zeros(n, dtype=torch.bool, device=device)
        best = {k: v.clone() for k, v in params.items()} if self.target is not None else None
        steps = torch.full((n,), self.num_steps, dtype=torch.long, device=device)
        metric = None
        t0 = time.perf_counter()
        for step in range(self.num_steps):
            coords, targets, batched = problem.train_batch(step)
            grads, _ = self.grad_fn(problem, batched)(params, coords, targets)
            lr = self.schedule(step)
            for g in opt.param_groups:
                g["lr"] = lr
            for name in names:
                params[name].grad = grads[name]
            opt.step()
            trained = step + 1
            if self.target is not None and (trained % self.check_every == 0 or trained == self.num_steps):
                metric = problem.metric(self.forward(), params)
                newly = (metric >= self.target) & ~done
                if newly.any():  # freeze these NeFs' results at this step
                    for k in names:
                        best[k][newly] = params[k][newly]
                    steps[newly] = trained
                    done |= newly
                if on_check is not None:
                    on_check(trained, metric)
                if bool(done.all()):
                    break
        for p in params.values():
            p.grad = None
        if self.target is not None:
            for k in names:
                best[k][~done] = params[k][~done]
            params = best
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        train_s = time.perf_counter() - t0
        metric = problem.metric(self.forward(), params)
        return ChunkResult(params=params, metric=metric, steps=steps, train_s=train_s)


def _foreach(optimizer) -> dict:
    """Ask for the multi-tensor (foreach) implementation where the optimizer has one."""
    import inspect

    target = getattr(optimizer, "func", optimizer)
    try:
        return {"foreach": True} if "foreach" in inspect.signature(target).parameters else {}
    except (TypeError, ValueError):
        return {}


class _Compiled:
    """torch.compile with an eager fallback: a compile failure costs speed, never the run."""

    def __init__(self, fn):
        self.eager = fn
        self.compiled = torch.compile(fn, dynamic=False)
        self.failed = False

    def __call__(self, *args):
        if not self.failed:
            try:
                return self.compiled(*args)
            except Exception as e:  # noqa: BLE001 - any backend failure falls back to eager
                self.failed = True
                log.warning("torch.compile failed (%s: %s); running eager", type(e).__name__, str(e)[:200])
        return self.eager(*args)
