"""SIREN (Sitzmann et al. 2020) as fit-a-nef builds it, with the initialisations other projects published.

``num_layers`` counts the output layer: num_layers - 1 sine layers, then a linear output.

The forward pass is the same for every variant (sin(omega_0 (W x + b)) per sine layer, a linear output),
so the fused step (nefs/fused) serves them all; only ``reset_parameters`` differs:

* ``first_init``: ``siren`` (default, Sitzmann's first layer: U(+-1/fan_in)) or ``hidden`` (the first layer
  drawn like the later ones, U(+-sqrt(6/fan_in)/omega_0): DWSNets' nn/inr.py never sets ``is_first``).
* ``bias_init``: ``zeros`` (default: fit-a-nef, DWSNets) or ``torch`` (nn.Linear's U(+-1/sqrt(fan_in)): NFN's
  SineLayer keeps torch's bias and only redraws the weight).
* ``output_init``: ``normal`` (default, fit-a-nef: N(0, 1/fan_in), zero bias), ``torch`` (nn.Linear's own:
  weight and bias U(+-1/sqrt(fan_in)); DWSNets) or ``siren`` (weight U(+-sqrt(6/fan_in)/omega_0), torch's
  bias; NFN's ``outermost_linear``).

An output offset (DWSNets renders ``linear + 0.5``) is not a NeF option: it is the image task's
``task.pixels.mean`` (the NeF fits ``(pixel - mean) / std``; conf/experiment/dwsnets_*.yaml).
"""
import math

import torch
from torch import nn

from .base import NeF, feature_major, fm_linear, point_major
from .errors import FitnefError
from .init import normal_, uniform_

FIRST_INITS = ("siren", "hidden")
BIAS_INITS = ("zeros", "torch")
OUTPUT_INITS = ("normal", "torch", "siren")


def _choice(name: str, value: str, allowed: tuple) -> str:
    if value not in allowed:
        raise FitnefError(f"nef.{name}={value!r}: not a SIREN option; allowed: {', '.join(allowed)}")
    return value


class SIREN(NeF):
    def __init__(self, in_features: int = 2, out_features: int = 1, hidden_dim: int = 8,
                 num_layers: int = 3, omega_0: float = 8.0, weight_scale: float = 1.0,
                 first_init: str = "siren", bias_init: str = "zeros", output_init: str = "normal"):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"SIREN num_layers={num_layers}: needs at least 2 (one sine layer + output)")
        self.in_features, self.out_features = in_features, out_features
        self.omega_0 = float(omega_0)
        self.weight_scale = float(weight_scale)
        self.first_init = _choice("first_init", first_init, FIRST_INITS)
        self.bias_init = _choice("bias_init", bias_init, BIAS_INITS)
        self.output_init = _choice("output_init", output_init, OUTPUT_INITS)
        dims = [in_features] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.output = nn.Linear(hidden_dim, out_features)

    def reset_parameters(self, generator: torch.Generator) -> None:
        for i, layer in enumerate(self.layers):
            fan_in = layer.weight.shape[1]
            # Sitzmann's first layer: U(-1/fan_in, 1/fan_in); later (and every layer under first_init=hidden):
            # U(-sqrt(6/fan_in)/omega_0, +)
            first = i == 0 and self.first_init == "siren"
            bound = 1.0 / fan_in if first else math.sqrt(6.0 / fan_in) / self.omega_0
            uniform_(layer.weight, bound * self.weight_scale, generator)
            self._bias(layer, generator)
        fan_in = self.output.weight.shape[1]
        if self.output_init == "normal":
            normal_(self.output.weight, math.sqrt(1.0 / fan_in), generator)
            nn.init.zeros_(self.output.bias)
        elif self.output_init == "torch":   # kaiming_uniform(a=sqrt(5)) is U(+-1/sqrt(fan_in)); bias the same
            uniform_(self.output.weight, 1.0 / math.sqrt(fan_in), generator)
            uniform_(self.output.bias, 1.0 / math.sqrt(fan_in), generator)
        else:
            uniform_(self.output.weight, math.sqrt(6.0 / fan_in) / self.omega_0, generator)
            uniform_(self.output.bias, 1.0 / math.sqrt(fan_in), generator)

    def _bias(self, layer: nn.Linear, generator: torch.Generator) -> None:
        if self.bias_init == "torch":
            uniform_(layer.bias, 1.0 / math.sqrt(layer.weight.shape[1]), generator)
        else:
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = feature_major(x)
        for layer in self.layers:
            h = torch.sin(self.omega_0 * fm_linear(layer, h))
        return point_major(fm_linear(self.output, h), x)
