"""``task.train.matmul_precision``: what the train step's float32 matmuls round their inputs to, in torch's
own vocabulary (``torch.set_float32_matmul_precision``); products are accumulated in fp32 in every case.

  highest  fp32 inputs (ChunkFitter's default)
  high     TF32 inputs (10 explicit mantissa bits; the config's default, conf/base/task.yaml)
  medium   bf16 inputs (7 explicit mantissa bits)

What each step does with it:
- the fused step (nefs/fused): its hidden x hidden matmuls (forward z = h W^T, backward dW = dz^T h and
  dh = dz W) round their inputs as named (the kernel's ``PREC``: ieee, tf32, bf16); the first and output
  layers, the loss and the activations stay fp32.
- the torch step on CUDA: ``torch.set_float32_matmul_precision(setting)`` around each gradient call,
  restored after it (so the metric's forward pass and the rest of the process keep theirs). cuBLAS has no
  bf16 path for float32 matmuls: high and medium both mean TF32 there, for every matmul of the step.
- the torch step on the CPU: torch's setting is left as it is for high and medium, so the step computes as
  the process does (fp32 unless it set otherwise): with "medium" torch sends float32 CPU matmuls through
  oneDNN in bf16 where the CPU has bf16 instructions, for all layers, which is neither the fused kernel's
  arithmetic nor the same on every CPU. highest sets "highest" around each gradient call (fp32 whatever the
  process set), restored after it.
The setting is part of a store's identity (tasks/identity.py): it changes the NeFs slightly.
"""
import contextlib

import torch

from .errors import FitnefError

# torch's name -> the fused kernel's PREC
KERNEL_PRECISION = {"highest": "ieee", "high": "tf32", "medium": "bf16"}
INPUTS = {"highest": "fp32", "high": "tf32", "medium": "bf16"}


def resolve_matmul_precision(setting) -> str:
    """The checked setting (before any store exists)."""
    setting = str(setting)
    if setting not in KERNEL_PRECISION:
        raise FitnefError(f"task.train.matmul_precision={setting!r}: use highest (fp32 inputs), high (tf32) "
                          f"or medium (bf16)")
    return setting


def precision_line(setting: str, fused: bool, device) -> str:
    """What ``setting`` means for this step on ``device``, for the log line of the chosen kernel."""
    head = f"task.train.matmul_precision={setting}: "
    if fused:
        return head + f"{INPUTS[setting]} inputs to the hidden matmuls, fp32 accumulation"
    if torch.device(device).type == "cuda":
        return head + ("fp32 matmuls" if setting == "highest" else "tf32 inputs to every matmul (cuBLAS), fp32 "
                       "accumulation")
    if setting == "highest":
        return head + "fp32 matmuls"
    return head + f"no effect on the CPU's torch step (torch's setting, {torch.get_float32_matmul_precision()}, " \
                  "left as it is)"


@contextlib.contextmanager
def torch_matmul_precision(setting: str, device):
    """torch's float32 matmul precision set to ``setting`` while inside, on CUDA (on the CPU: only "highest"),
    and restored on the way out."""
    before = torch.get_float32_matmul_precision()
    if before == setting or (torch.device(device).type != "cuda" and setting != "highest"):
        yield
        return
    torch.set_float32_matmul_precision(setting)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


class AtPrecision:
    """A torch grad fn that runs under ``torch_matmul_precision(setting, device)``."""

    def __init__(self, fn, setting: str, device):
        self.fn, self.setting, self.device = fn, setting, torch.device(device)

    def __call__(self, *args):
        with torch_matmul_precision(self.setting, self.device):
            return self.fn(*args)
