"""``task.train.kernel``: which implementation computes the per-NeF gradients.

torch: vmap(grad_and_value(loss)) of the NeF's forward pass (nefs/engine.py), compiled or eager.
fused: the Triton kernel of nefs/fused/kernel.py (nefs/fused/mfn_kernel.py for FourierNet and GaborNet);
       needs CUDA (or TRITON_INTERPRET=1, Triton's CPU interpreter: exact but slow, for tests), a NeF of
       nefs.fused.spec.SUPPORTED and a Problem that names its loss in ``fused_loss``.
auto:  fused where all of that holds on a CUDA device, torch otherwise (never the interpreter).
"""
import logging
import os

import torch

from ..errors import FitnefError
from ..precision import KERNEL_PRECISION, precision_line
from .spec import MAX_AUTO_CUDA_WIDTH, MAX_MFN_CUDA_WIDTH, MFNSpec, describe

log = logging.getLogger(__name__)
CHOICES = ("auto", "fused", "torch")


def _interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes", "y")


def _triton_missing() -> str:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed (it comes with CUDA builds of torch)"
    return ""


def why_not(template, device: torch.device, problem=None, interpreter_ok: bool = True, auto: bool = False) -> str:
    """'' when the fused step can run this NeF (and problem) on ``device``, else the reason; ``auto``: also
    '' only where auto would choose it (on a GPU, widths up to MAX_AUTO_CUDA_WIDTH)."""
    spec, reason = describe(template)
    if reason:
        return reason
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and isinstance(spec, MFNSpec) and spec.padded_width > MAX_MFN_CUDA_WIDTH:
        return f"nef {spec.kind} hidden_dim={spec.width} is wider than the fused MFN step's {MAX_MFN_CUDA_WIDTH} on a GPU"
    if auto and on_gpu and spec.padded_width > MAX_AUTO_CUDA_WIDTH:
        return (f"nef {spec.kind} hidden_dim={spec.width}: auto takes the fused step up to {MAX_AUTO_CUDA_WIDTH} "
                "on a GPU (task.train.kernel=fused runs it up to 256)")
    if problem is not None and getattr(type(problem), "fused_loss", None) is None:
        return f"{type(problem).__name__} names no fused_loss"
    if torch.device(device).type != "cuda" and not (interpreter_ok and _interpreter_requested()):
        return f"device {torch.device(device)} is not CUDA (set TRITON_INTERPRET=1 before starting python " \
               "for Triton's slow CPU interpreter)"
    return _triton_missing()


def resolve_kernel(setting, template, device: torch.device) -> str:
    """The checked setting (before any store exists): auto and torch always pass, fused only where it runs."""
    setting = str(setting)
    if setting not in CHOICES:
        raise FitnefError(f"task.train.kernel={setting!r}: use auto, fused or torch")
    if setting == "fused":
        reason = why_not(template, device)
        if reason:
            raise FitnefError(f"task.train.kernel=fused: {reason}; use task.train.kernel=auto or torch")
    return setting


def fused_grad_fn(template, problem, batched: bool, setting: str, fallback, matmul_precision: str = "highest",
                  quiet: bool = False):
    """The engine's grad fn for ``problem``: the fused step, or ``fallback`` (the torch one) where
    ``setting`` is auto and the fused step cannot run. Logs the choice, with the matmul precision.

    matmul_precision: task.train.matmul_precision (nefs/precision.py): the fused step's matmul inputs,
    highest (fp32), high (tf32) or medium (bf16), fp32 accumulation; ``fallback`` applies it itself.
    quiet: no log line (the chunk-size probe builds one per size)."""
    device = next(template.parameters()).device
    what = f"{type(template).__name__}, {'per-NeF' if batched else 'shared'} coordinates"
    if setting == "torch":
        if not quiet:
            log.info("task.train.kernel=torch: torch step for %s; %s", what,
                     precision_line(matmul_precision, False, device))
        return fallback
    reason = why_not(template, device, problem, interpreter_ok=setting == "fused", auto=setting == "auto")
    if reason:
        if setting == "fused":
            raise FitnefError(f"task.train.kernel=fused: {reason}; use task.train.kernel=auto or torch")
        if not quiet:
            log.info("task.train.kernel=auto: torch step for %s (%s); %s", what, reason,
                     precision_line(matmul_precision, False, device))
        return fallback
    from .step import FusedGrad

    spec, _ = describe(template)
    if not quiet:
        log.info("task.train.kernel=%s: fused Triton step for %s%s; %s", setting, what,
                 " (Triton interpreter)" if device.type != "cuda" else "",
                 precision_line(matmul_precision, True, device))
    return _FirstCallChecked(FusedGrad(spec, type(problem).fused_loss, KERNEL_PRECISION[matmul_precision]), fallback,
                             strict=setting == "fused")


class _FirstCallChecked:
    """The fused step, with the torch step in reserve for auto: a kernel that fails to compile on this
    GPU (e.g. an older GPU with less shared memory) costs speed, never the run."""

    def __init__(self, fused, fallback, strict: bool):
        self.fused, self.fallback, self.strict = fused, fallback, strict
        self.checked = False

    def __call__(self, *args):
        if self.checked:
            return self.fused(*args)
        try:
            out = self.fused(*args)
        except torch.cuda.OutOfMemoryError:   # the caller's to handle (the chunk probe stops there)
            raise
        except Exception as e:  # noqa: BLE001 - any Triton compile/launch failure
            if self.strict:
                raise FitnefError(f"task.train.kernel=fused: the kernel failed ({type(e).__name__}: "
                                  f"{str(e)[:200]}); use task.train.kernel=torch") from None
            log.warning("fused step failed (%s: %s); using the torch step", type(e).__name__, str(e)[:200])
            self.fused = self.fallback
            out = self.fused(*args)
        self.checked = True
        return out
