"""Random Fourier feature network (Tancik et al. 2020) as fit-a-nef builds it.

Encoding: [sin, cos](std * B 2πx) with B (hidden_dim/2, in) ~ N(0, 1), learnable or frozen; then
num_layers - 1 ReLU layers and a linear output.
"""
import math

import torch
from torch import nn

from .base import NeF, feature_major, fm_linear, point_major
from .init import normal_, variance_scaling_normal_, variance_scaling_uniform_


class RFFNet(NeF):
    def __init__(self, in_features: int = 2, out_features: int = 1, hidden_dim: int = 32, num_layers: int = 3,
                 std: float = 3.5, learnable_coefficients: bool = True):
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"RFFNet hidden_dim={hidden_dim}: must be even (sin and cos halves)")
        if num_layers < 2:
            raise ValueError(f"RFFNet num_layers={num_layers}: needs at least 2 (one hidden + output)")
        self.in_features, self.out_features = in_features, out_features
        self.std = float(std)
        self.learnable_coefficients = bool(learnable_coefficients)
        self.coefficients = nn.Parameter(torch.empty(hidden_dim // 2, in_features))
        self.layers = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_layers - 1))
        self.output = nn.Linear(hidden_dim, out_features)

    def reset_parameters(self, generator: torch.Generator) -> None:
        normal_(self.coefficients, 1.0, generator)
        for layer in self.layers:
            variance_scaling_normal_(layer.weight, 2.0, generator)
            normal_(layer.bias, 1e-6, generator)
        variance_scaling_uniform_(self.output.weight, 2.0, generator)
        normal_(self.output.bias, 1e-6, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.coefficients if self.learnable_coefficients else self.coefficients.detach()
        proj = (self.std * 2 * math.pi) * (b @ feature_major(x))          # (hidden/2, P)
        h = torch.cat([torch.sin(proj), torch.cos(proj)], dim=0)
        for layer in self.layers:
            h = torch.relu(fm_linear(layer, h))
        return point_major(fm_linear(self.output, h), x)
