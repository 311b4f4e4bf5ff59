"""Where the fused step can run: ``why_not``.

The fused step (nefs/fused/kernel.py; nefs/fused/mfn_kernel.py for FourierNet and GaborNet) needs CUDA (or
TRITON_INTERPRET=1, Triton's CPU interpreter: exact but slow, for tests), a NeF of nefs.fused.spec.SUPPORTED
and a Problem that names its loss in ``fused_loss``. Which implementation a run uses is chosen in one place,
nefs/step_choice.py (auto: by measurement among those that can run).
"""
import logging
import os

import torch

from .spec import MAX_MFN_CUDA_WIDTH, MFNSpec, describe

log = logging.getLogger(__name__)


def _interpreter_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes", "y")


def _triton_missing() -> str:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed (it comes with CUDA builds of torch)"
    return ""


def why_not(template, device: torch.device, problem=None, interpreter_ok: bool = True) -> str:
    """'' when the fused step can run this NeF (and problem) on ``device``, else the reason."""
    spec, reason = describe(template)
    if reason:
        return reason
    on_gpu = torch.device(device).type == "cuda"
    if on_gpu and isinstance(spec, MFNSpec) and spec.padded_width > MAX_MFN_CUDA_WIDTH:
        return f"nef {spec.kind} hidden_dim={spec.width} is wider than the fused MFN step's {MAX_MFN_CUDA_WIDTH} on a GPU"
    if problem is not None and getattr(type(problem), "fused_loss", None) is None:
        return f"{type(problem).__name__} names no fused_loss"
    if torch.device(device).type != "cuda" and not (interpreter_ok and _interpreter_requested()):
        return f"device {torch.device(device)} is not CUDA (set TRITON_INTERPRET=1 before starting python " \
               "for Triton's slow CPU interpreter)"
    return _triton_missing()
