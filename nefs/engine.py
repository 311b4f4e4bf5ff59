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
import logging
import time
from typing import Callable, Optional

import numpy as np
import torch

from .chunks import fit_chunk
from .inflight import InFlight, LoopState
from .modality import Metric, Params, Problem  # noqa: F401  (Problem: the protocol chunks follow)
from .precision import MatmulPrecision, resolve_matmul_precision
from .slots import CPU_CACHE_BYTES, ChunkResult, MicroBatch, assign_rows, cache_sized_batch, sync, take_rows  # noqa: F401
from .stack import stacked_forward
from .step_choice import ChosenStep, Kernel, StepSettings
from .stream import fit_stream

log = logging.getLogger(__name__)


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
                 metric: Optional[Metric] = None, kernel: str = "torch", matmul_precision="highest",
                 compile_mode: Optional[str] = None, step_cache=None):
        self.template = template
        self.optimizer = optimizer
        self.schedule = schedule
        self.num_steps = int(num_steps)
        self.check_every = max(int(check_every), 1)
        self.target = target
        self.metric = metric or Metric("metric")
        self.compile = compile
        self.micro_batch = micro_batch
        # how the gradient may be computed (nefs/step_choice.py): kernel torch | fused | auto, compiled or not,
        # matmul inputs highest | high | medium (fp32 / tf32 / bf16, nefs/precision.py), auto's decisions cached
        self.step_settings = StepSettings(kernel=Kernel(getattr(kernel, "value", kernel)), compile=bool(compile),
                                          compile_mode=compile_mode,
                                          matmul_precision=resolve_matmul_precision(matmul_precision),
                                          cache=step_cache)
        # on_step(step, loss (N,), params, problem) after each optimizer step, outside the timed step
        # (loggers, progress; None: no call, no sync)
        self.on_step = on_step
        # pause(snapshot) after each step (and its finished NeFs): may call snapshot() -> the InFlight state
        # (nefs/inflight.py), to save it (preemption, checkpoints), and may raise to stop; None: no call
        self.pause: Optional[Callable[[Callable[[], InFlight]], None]] = None
        self.unit: Optional[int] = None   # the one compiled chunk shape, fixed by the first call
        self._grad_fns: dict = {}
        self._warm = False
        self._warmup_s = 0.0

    @property
    def kernel(self) -> Kernel:
        return self.step_settings.kernel

    @property
    def matmul_precision(self) -> MatmulPrecision:
        return self.step_settings.matmul_precision

    # -- the step --------------------------------------------------------------------------------
    def grad_fn(self, problem, batched: bool):
        """The per-NeF gradient for this problem type, as nefs/step_choice.py chooses it (one place)."""
        k = (type(problem), batched)
        if k not in self._grad_fns:
            self._grad_fns[k] = ChosenStep(self.template, problem, batched, self.step_settings,
                                           interpreter_ok=self.step_settings.kernel == Kernel.FUSED)
        return self._grad_fns[k]

    @property
    def chosen_step(self) -> str:
        """The step each problem type ran with ("" before the first step), e.g. "fused 32x4x3"."""
        return "; ".join(sorted({g.name for g in self._grad_fns.values() if g.name}))

    def forward(self, batched: bool = False):
        return stacked_forward(self.template, batched)

    def _unit_for(self, n: int, problem) -> int:
        if self.unit is None:
            cap = self.micro_batch
            if cap == MicroBatch.CACHE:
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
               on_finish: Callable[[np.ndarray, ChunkResult], np.ndarray], resume: Optional[LoopState],
               wrap: Callable[[LoopState], InFlight]) -> tuple:
        """Train the slots of ``params`` until no slot is ``live``; returns (training time, warm-up time).

        on_finish(slots, result) gets the NeFs that finished at this step (their params cloned) and
        returns the slots it refilled in place (params and problem rows): those start again at step 0,
        which needs an optimizer with per-slot state. Slots neither live nor refilled idle.
        resume: the loop's own part of a snapshot (per-slot steps, whether they are uniform) to continue from;
        after every step ``self.pause`` (if set) gets a function that returns the ``InFlight`` state (the
        loop's part, wrapped by ``wrap`` in the caller's), to save it and perhaps stop (it may raise).
        """
        device = next(iter(params.values())).device
        forward = self.forward()
        slots = len(live)
        host_steps = np.zeros(slots, dtype=np.int64)   # steps per slot, kept on the host: no sync to decide
        uniform = True                                 # all slots at one step (no refill yet): an int step
        if resume is not None:
            host_steps, uniform = resume.host_steps.copy(), resume.uniform
        if opt.per_slot:
            lr_table = torch.tensor([self.schedule(s) for s in range(self.num_steps)], device=device)
        warmup, it, last = 0.0, 0, {}

        def snapshot() -> InFlight:
            return wrap(LoopState(host_steps.copy(), uniform, live.copy(), params, opt.state_dict()))

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
        sync(device)
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
    def fit(self, params: Params, problem, resume: Optional[InFlight] = None,
            rows: Optional[np.ndarray] = None) -> ChunkResult:
        """Fit one chunk (nefs/chunks.py); ``resume``: a snapshot of this chunk (``pause``) to continue from;
        ``rows``: the chunk's NeF rows, as its snapshots name them."""
        return fit_chunk(self, params, problem, resume, rows)

    # -- continuous batching -------------------------------------------------------------------
    def fit_stream(self, rows: np.ndarray, make: Callable, slots: int,
                   emit: Callable[[np.ndarray, ChunkResult], None], resume: Optional[InFlight] = None) -> float:
        """Fit ``rows`` through ``slots`` slots by continuous batching (nefs/stream.py); returns the training time."""
        return fit_stream(self, rows, make, slots, emit, resume)
