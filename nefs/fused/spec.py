"""Which NeFs the fused step can run, described as the kernel sees them.

Generic over types by structure: a first layer (linear + activation, or random Fourier features), K
hidden width x width layers with the same activation, a linear output (FusedSpec, nefs/fused/kernel.py);
or a multiplicative filter network, FourierNet or GaborNet (MFNSpec, nefs/fused/mfn_kernel.py). Types are
matched exactly, so a subclass with a different forward pass is never given a kernel.
"""
import math
from dataclasses import dataclass
from typing import Optional, Tuple, Union

from ..mfn import FourierNet, GaborNet
from ..mlp import MLP
from ..rffnet import RFFNet
from ..siren import SIREN

MAX_WIDTH = 256       # widest NeF the kernel takes (tested in the interpreter, compiled for sm_90); wider: torch
MAX_MFN_CUDA_WIDTH = 64   # the MFN kernel keeps its gradient sums in registers: widths up to 64 on a GPU
SUPPORTED = ("SIREN", "MLP", "RFFNet", "FourierNet", "GaborNet")
ACT_SIN, ACT_RELU = 0, 1


@dataclass(frozen=True)
class FusedSpec:
    kind: str                 # SIREN | MLP | RFFNet
    in_features: int          # D
    width: int                # H
    out_features: int         # C
    first: Tuple[str, ...]    # (weight, bias) names, or (coefficients,) for RFFNet
    hidden: Tuple[str, ...]   # weight names of the K hidden layers, in order (bias: same prefix)
    act: int                  # ACT_SIN: sin(omega z), ACT_RELU
    omega: float = 1.0
    enc_scale: float = 0.0    # RFFNet: std * 2 pi
    learnable_first: bool = True

    @property
    def padded_width(self) -> int:
        """Width of a kernel tile: a power of two, at least 8 (tl.dot's smallest fp32 inner size)."""
        return max(8, 1 << (self.width - 1).bit_length())


@dataclass(frozen=True)
class MFNSpec:
    """A multiplicative filter network (nefs/mfn.py) as nefs/fused/mfn_kernel.py sees it; parameter names
    follow from ``filters``: filters.{i}.*, linears.{i-1}.weight/bias, output.weight/bias."""
    kind: str                 # FourierNet | GaborNet
    in_features: int          # D
    width: int                # H
    out_features: int         # C
    filters: int              # F: filters, F - 1 linears between them
    gabor: bool               # filters windowed by a Gaussian (mu, gamma)

    @property
    def padded_width(self) -> int:
        """Width of a kernel tile: a power of two, at least 8 (as FusedSpec's)."""
        return max(8, 1 << (self.width - 1).bit_length())


def describe(template) -> Tuple[Optional[Union[FusedSpec, MFNSpec]], str]:
    """(spec, "") for a NeF the kernel supports, else (None, why not)."""
    t = type(template)
    name = t.__name__
    if t is SIREN:
        n = len(template.layers)
        spec = FusedSpec(name, template.in_features, template.layers[0].out_features, template.out_features,
                         ("layers.0.weight", "layers.0.bias"), tuple(f"layers.{i}.weight" for i in range(1, n)),
                         ACT_SIN, omega=template.omega_0)
    elif t is MLP:
        n = len(template.layers)
        spec = FusedSpec(name, template.in_features, template.layers[0].out_features, template.out_features,
                         ("layers.0.weight", "layers.0.bias"), tuple(f"layers.{i}.weight" for i in range(1, n)),
                         ACT_RELU)
    elif t is RFFNet:
        spec = FusedSpec(name, template.in_features, template.output.in_features, template.out_features,
                         ("coefficients",), tuple(f"layers.{i}.weight" for i in range(len(template.layers))),
                         ACT_RELU, enc_scale=template.std * 2 * math.pi,
                         learnable_first=template.learnable_coefficients)
    elif t is FourierNet or t is GaborNet:
        spec = MFNSpec(name, template.in_features, template.hidden_dim, template.out_features,
                       template.num_filters, t is GaborNet)
    else:
        return None, f"nef {name} has no fused step (supported: {', '.join(SUPPORTED)})"
    if spec.width > MAX_WIDTH:
        return None, f"nef {name} hidden_dim={spec.width} is wider than the fused step's {MAX_WIDTH}"
    return spec, ""
