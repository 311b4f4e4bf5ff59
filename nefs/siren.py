"""SIREN (Sitzmann et al. 2020) as fit-a-nef builds it.

``num_layers`` counts the output layer: num_layers - 1 sine layers, then a linear output.
"""
import math

import torch
from torch import nn

from .base import NeF, feature_major, fm_linear, point_major
from .init import normal_, uniform_


class SIREN(NeF):
    def __init__(self, in_features: int = 2, out_features: int = 1, hidden_dim: int = 8,
                 num_layers: int = 3, omega_0: float = 8.0, weight_scale: float = 1.0):
        super().__init__()
        if num_layers < 2:
            raise ValueError(f"SIREN num_layers={num_layers}: needs at least 2 (one sine layer + output)")
        self.in_features, self.out_features = in_features, out_features
        self.omega_0 = float(omega_0)
        self.weight_scale = float(weight_scale)
        dims = [in_features] + [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.output = nn.Linear(hidden_dim, out_features)

    def reset_parameters(self, generator: torch.Generator) -> None:
        for i, layer in enumerate(self.layers):
            fan_in = layer.weight.shape[1]
            # first layer: U(-1/fan_in, 1/fan_in); later: U(-sqrt(6/fan_in)/omega_0, +)
            bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.omega_0
            uniform_(layer.weight, bound * self.weight_scale, generator)
            nn.init.zeros_(layer.bias)
        normal_(self.output.weight, math.sqrt(1.0 / self.output.weight.shape[1]), generator)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = feature_major(x)
        for layer in self.layers:
            h = torch.sin(self.omega_0 * fm_linear(layer, h))
        return point_major(fm_linear(self.output, h), x)
