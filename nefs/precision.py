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
from enum import StrEnum

import torch

from .errors import FitnefError


class MatmulPrecision(StrEnum):
    """``task.train.matmul_precision``, in torch's names (a ``str``: it goes to torch as it is)."""

    HIGHEST = "highest"   # fp32 inputs
    HIGH = "high"         # tf32 inputs
    MEDIUM = "medium"     # bf16 inputs

    @property
    def inputs(self) -> str:
        """The matmul inputs' format, as a person says it."""
        return {"highest": "fp32", "high": "tf32", "medium": "bf16"}[self.value]

    @property
    def kernel(self) -> str:
        """The fused kernel's ``PREC`` (tl.dot's input_precision)."""
        return {"highest": "ieee", "high": "tf32", "medium": "bf16"}[self.value]


def resolve_matmul_precision(setting) -> MatmulPrecision:
    """The checked setting (before any store exists)."""
    value = str(getattr(setting, "value", setting))
    if value not in {p.value for p in MatmulPrecision}:
        raise FitnefError(f"task.train.matmul_precision={value!r}: use highest (fp32 inputs), high (tf32) "
                          f"or medium (bf16)")
    return MatmulPrecision(value)


def precision_line(setting: MatmulPrecision, fused: bool, device) -> str:
    """What ``setting`` means for this step on ``device``, for the log line of the chosen kernel."""
    head = f"task.train.matmul_precision={setting.value}: "
    if fused:
        return head + f"{setting.inputs} inputs to the hidden matmuls, fp32 accumulation"
    if torch.device(device).type == "cuda":
        return head + ("fp32 matmuls" if setting == MatmulPrecision.HIGHEST else "tf32 inputs to every matmul "
                       "(cuBLAS), fp32 accumulation")
    if setting == MatmulPrecision.HIGHEST:
        return head + "fp32 matmuls"
    return head + f"no effect on the CPU's torch step (torch's setting, {torch.get_float32_matmul_precision()}, " \
                  "left as it is)"


@contextlib.contextmanager
def torch_matmul_precision(setting: MatmulPrecision, device):
    """torch's float32 matmul precision set to ``setting`` while inside, on CUDA (on the CPU: only "highest"),
    and restored on the way out."""
    before = torch.get_float32_matmul_precision()
    if before == setting or (torch.device(device).type != "cuda" and setting != "highest"):
        yield
        return
    torch.set_float32_matmul_precision(str(setting))
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


class AtPrecision:
    """A torch grad fn that runs under ``torch_matmul_precision(setting, device)``."""

    def __init__(self, fn, setting: MatmulPrecision, device):
        self.fn, self.setting, self.device = fn, setting, torch.device(device)

    def __call__(self, *args):
        with torch_matmul_precision(self.setting, self.device):
            return self.fn(*args)
