"""The one place that chooses how the per-NeF gradients are computed, by measuring where there is a choice
(its decisions kept by nefs/step_cache.py).

Candidates: the fused Triton step (nefs/fused) at its tile table's choice and that tile's neighbours (half and twice the
points or the warps), the
torch step ``vmap(grad_and_value(loss))`` compiled (when the plan compiles) and, on CUDA, eager. Where more
than one can run (``task.train.kernel=auto`` on a GPU), the first call of the step does what cuDNN's benchmark
mode and Triton's autotuner do: each candidate's first gradients are checked against the torch step's (within
the tolerance of the run's matmul precision), the ones that agree are timed for a few steps on the run's own
arguments, and the fastest is kept; one log line gives the table. A candidate that fails to build or run, or
disagrees, is dropped with a one-line warning and the fit goes on. The decision is cached per (device, torch
and triton versions, NeF, batch shape, precision) in a small JSON file under the user's cache directory, so
the next run of that shape starts at once. With one candidate (a CPU, or a forced kernel) nothing is measured.

The choice is a run-only matter: every candidate computes the same gradients within the precision's
tolerance, so the NeFs do not depend on which one wins.
"""
import logging
import math
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.func import functional_call, grad_and_value

from .errors import FitnefError
from .step_cache import ChoiceCache, cache_key
from .fused.select import why_not
from .fused.spec import describe
from .fused.step import FusedGrad, default_tile, neighbour_tiles   # Triton loads when a kernel is first built
from .precision import AtPrecision, MatmulPrecision, precision_line

log = logging.getLogger(__name__)

GradFn = Callable   # (params, coords, targets) -> (grads, per-NeF loss)


class Kernel(str, Enum):
    """``task.train.kernel``."""

    AUTO = "auto"     # measure the candidates that can run here and keep the fastest
    FUSED = "fused"   # the fused Triton step, or a one-line error
    TORCH = "torch"   # vmap(grad_and_value(loss)), compiled when the plan compiles


def resolve_kernel(setting, template, device: torch.device) -> Kernel:
    """The checked setting (before any store exists): auto and torch always pass, fused only where it runs."""
    value = str(getattr(setting, "value", setting))
    if value not in {k.value for k in Kernel}:
        raise FitnefError(f"task.train.kernel={value!r}: use auto, fused or torch")
    if value == Kernel.FUSED:
        reason = why_not(template, device)
        if reason:
            raise FitnefError(f"task.train.kernel=fused: {reason}; use task.train.kernel=auto or torch")
    return Kernel(value)


# Relative L2 distance of a candidate's first gradients (all tensors together) to the torch step's, by the
# run's matmul precision: fp32 sums in another order stay near 1e-6; tf32 / bf16 inputs move them by their
# rounding (2^-11, 2^-8) times the growth through the layers (docs/performance.md, precision).
TOLERANCE = {MatmulPrecision.HIGHEST: 1e-3, MatmulPrecision.HIGH: 2e-2, MatmulPrecision.MEDIUM: 6e-2}


@dataclass(frozen=True)
class StepSettings:
    """How the step may be built: resolved once by the plan."""

    kernel: Kernel = Kernel.TORCH
    compile: bool = False
    compile_mode: Optional[str] = None      # torch.compile's mode (e.g. reduce-overhead: a CUDA graph)
    matmul_precision: MatmulPrecision = MatmulPrecision.HIGHEST
    cache: Optional[Path] = None            # JSON file of earlier decisions; None: no cache
    timed_steps: int = 3                    # steps timed per candidate


# -- the torch step --------------------------------------------------------------------------------------------
def torch_grad_fn(template: torch.nn.Module, problem_type, batched: bool) -> GradFn:
    """The per-NeF gradient as torch computes it (the reference every other candidate is checked against)."""
    loss = problem_type.loss   # pure: safe to compile per type

    def nef_loss(p, x, y):
        return loss(functional_call(template, p, (x,)), y)

    return torch.vmap(grad_and_value(nef_loss), in_dims=(0, 0 if batched else None, 0))


class Compiled:
    """torch.compile with an eager fallback: a compile failure costs speed, never the run."""

    def __init__(self, fn: GradFn, mode: Optional[str] = None):
        self.eager, self.mode = fn, mode
        self.compiled = torch.compile(fn, dynamic=False, mode=mode)
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


# -- candidates ------------------------------------------------------------------------------------------------
@dataclass
class Candidate:
    name: str                       # as logged and cached: "fused 64x4x3", "torch compiled", "torch"
    build: Callable[[], GradFn]     # may raise: the candidate is then dropped (auto) or the error shown (forced)
    fused: bool = False


def candidates(template: torch.nn.Module, problem, batched: bool, settings: StepSettings,
               interpreter_ok: bool = False) -> Tuple[List[Candidate], str]:
    """(the candidates that can run this NeF and problem on the template's device, why the fused step cannot
    ('' if it can)). ``interpreter_ok``: a CPU may run the fused step in Triton's interpreter (tests; forced)."""
    device = next(template.parameters()).device
    out: List[Candidate] = []
    auto = settings.kernel == Kernel.AUTO
    reason = ""
    if settings.kernel != Kernel.TORCH:
        # auto measures: any width the kernel takes may compete (a spilling tile simply loses)
        reason = why_not(template, device, problem, interpreter_ok=interpreter_ok or settings.kernel == Kernel.FUSED)
        if reason and settings.kernel == Kernel.FUSED:
            raise FitnefError(f"task.train.kernel=fused: {reason}; use task.train.kernel=auto or torch")
        if not reason:
            out.extend(_fused_candidates(template, problem, settings, neighbours=auto))
    if settings.kernel != Kernel.FUSED:
        eager = lambda: AtPrecision(torch_grad_fn(template, type(problem), batched),  # noqa: E731
                                    settings.matmul_precision, device)
        if settings.compile:
            out.append(Candidate("torch compiled", lambda: AtPrecision(
                Compiled(torch_grad_fn(template, type(problem), batched), settings.compile_mode),
                settings.matmul_precision, device)))
        if not settings.compile or (auto and device.type == "cuda" and out):
            out.append(Candidate("torch", eager))   # beside compiled only where measuring is worth it: CUDA
    return out, reason


def _fused_candidates(template, problem, settings: StepSettings, neighbours: bool) -> List[Candidate]:

    spec, _ = describe(template)
    loss, prec = type(problem).fused_loss, settings.matmul_precision.kernel
    tiles = [default_tile(spec, prec)] + (neighbour_tiles(spec, prec) if neighbours else [])
    return [Candidate(f"fused {'x'.join(map(str, tile))}",
                      lambda tile=tile: FusedGrad(spec, loss, prec, tile=tile), fused=True) for tile in tiles]


# -- measuring -------------------------------------------------------------------------------------------------
def gradient_gap(grads: Dict[str, torch.Tensor], reference: Dict[str, torch.Tensor]) -> float:
    """Relative L2 distance of ``grads`` to ``reference`` over all tensors together (nan/inf: inf)."""
    num = sum(float(((grads[k].float() - reference[k].float()) ** 2).sum()) for k in reference)
    den = sum(float((reference[k].float() ** 2).sum()) for k in reference)
    gap = math.sqrt(num) / max(math.sqrt(den), 1e-30)
    return gap if math.isfinite(gap) else math.inf


def time_steps(fn: GradFn, args: tuple, steps: int) -> float:
    """Seconds per call of ``fn(*args)`` over ``steps`` calls (after the agreement check's warm-up)."""
    device = next(iter(args[0].values())).device
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        fn(*args)
    _sync(device)
    return (time.perf_counter() - t) / steps


@dataclass
class Choice:
    name: str
    fn: GradFn
    table: Dict[str, str] = field(default_factory=dict)   # candidate -> "1.23 ms" or why it was dropped
    cached: bool = False


def choose(cands: List[Candidate], args: tuple, reference: GradFn, tolerance: float,
           timer: Callable[[str, GradFn, tuple], float]) -> Choice:
    """Build, check and time each candidate on ``args``; the fastest that agrees with ``reference`` wins."""
    ref_grads, _ = reference(*args)
    times: Dict[str, float] = {}
    built: Dict[str, GradFn] = {}
    table: Dict[str, str] = {}
    for cand in cands:
        try:
            fn = cand.build()
            grads, _ = fn(*args)
            gap = gradient_gap(grads, ref_grads)
            if gap > tolerance:
                raise _Disagrees(f"gradients {gap:.1e} from the torch step's (tolerance {tolerance:g})")
            times[cand.name] = float(timer(cand.name, fn, args))
            built[cand.name] = fn
            table[cand.name] = f"{1e3 * times[cand.name]:.3f} ms"
        except torch.cuda.OutOfMemoryError:
            raise   # the caller's to handle (the chunk probe stops there)
        except Exception as e:  # noqa: BLE001 - any build, compile, launch or agreement failure drops it
            why = str(e) if isinstance(e, _Disagrees) else f"{type(e).__name__}: {str(e)[:160]}"
            table[cand.name] = f"dropped ({why.splitlines()[0] if why else type(e).__name__})"
            log.warning("step candidate %s dropped: %s", cand.name, table[cand.name][9:-1])
    if not times:
        raise FitnefError("no training step could run here: " + "; ".join(f"{k}: {v}" for k, v in table.items()))
    best = min(times, key=times.get)
    return Choice(best, built[best], table)


class _Disagrees(Exception):
    pass


# -- the step the engine runs ----------------------------------------------------------------------------------
class ChosenStep:
    """The engine's gradient function for one problem type: the single candidate, or the one that the first
    call measures fastest (or the cache remembers)."""

    def __init__(self, template, problem, batched: bool, settings: StepSettings, interpreter_ok: bool = False,
                 timer: Optional[Callable[[str, GradFn, tuple], float]] = None, quiet: bool = False):
        self.template, self.problem, self.batched, self.settings = template, problem, batched, settings
        self.cands, self.why_not_fused = candidates(template, problem, batched, settings, interpreter_ok)
        self.timer = timer or (lambda name, fn, args: time_steps(fn, args, settings.timed_steps))
        self.quiet = quiet
        self.choice: Optional[Choice] = None

    @property
    def name(self) -> Optional[str]:
        return None if self.choice is None else self.choice.name

    @property
    def fn(self) -> GradFn:
        return self.choice.fn

    def __call__(self, *args):
        if self.choice is None:
            return self._first_call(args)
        return self.choice.fn(*args)

    def _first_call(self, args):
        if len(self.cands) == 1:
            self.choice, out = self._only(args)   # the first step's own result: no step computed twice
        else:
            self.choice = self._measured(args)
            out = self.choice.fn(*args)
        self._announce()
        return out

    def _only(self, args) -> tuple:
        """(the one candidate, its result on ``args``); a kernel that cannot compile on this GPU says so, in
        one line."""
        cand = self.cands[0]
        try:
            fn = cand.build()
            out = fn(*args)
        except torch.cuda.OutOfMemoryError:
            raise
        except FitnefError:
            raise
        except Exception as e:  # noqa: BLE001
            if cand.fused:
                raise FitnefError(f"task.train.kernel=fused: the kernel failed ({type(e).__name__}: "
                                  f"{str(e)[:200]}); use task.train.kernel=torch") from None
            raise
        return Choice(cand.name, fn), out

    def _measured(self, args) -> Choice:
        settings = self.settings
        cache = ChoiceCache(settings.cache)
        key = cache_key(self.template, self.problem, args, settings, self.cands)
        hit = cache.get(key)
        by_name = {c.name: c for c in self.cands}
        if hit is not None and hit["chosen"] in by_name:
            try:
                fn = by_name[hit["chosen"]].build()
                fn(*args)
                return Choice(hit["chosen"], fn, dict(hit.get("table", {})), cached=True)
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as e:  # noqa: BLE001 - the remembered winner no longer runs: measure again
                log.warning("cached step %s failed (%s); measuring again", hit["chosen"], type(e).__name__)
        device = next(self.template.parameters()).device
        reference = AtPrecision(torch_grad_fn(self.template, type(self.problem), self.batched),
                                settings.matmul_precision, device)
        choice = choose(self.cands, args, reference, TOLERANCE[settings.matmul_precision], self.timer)
        cache.put(key, {"chosen": choice.name, "table": choice.table, "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return choice

    def _announce(self) -> None:
        if self.quiet:
            return
        device = next(self.template.parameters()).device
        what = f"{type(self.template).__name__}, {'per-NeF' if self.batched else 'shared'} coordinates"
        fused = self.choice.name.startswith("fused")
        where = " (Triton interpreter)" if fused and device.type != "cuda" else ""
        head = f"task.train.kernel={self.settings.kernel.value}: {self.choice.name} step for {what}{where}"
        if self.choice.table:
            source = "cached" if self.choice.cached else "measured"
            head += f" ({source}: " + ", ".join(f"{k} {v}" for k, v in self.choice.table.items()) + ")"
        elif self.why_not_fused and self.settings.kernel == Kernel.AUTO:
            head += f" ({self.why_not_fused})"
        log.info("%s; %s", head, precision_line(self.settings.matmul_precision, fused, device))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
