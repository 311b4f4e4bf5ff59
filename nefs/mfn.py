"""Multiplicative filter networks (Fathony et al. 2021): FourierNet and GaborNet, as in fit-a-nef.

z_0 = g_0(x);  z_i = g_i(x) * (W_i z_{i-1} + b_i);  y = W_out z_{F-1} + b_out, with F filters g_i.
"""
import math

import torch
from torch import nn

from .base import NeF, feature_major, fm_linear, point_major
from .init import truncated_normal_, uniform_, variance_scaling_uniform_


class _MFN(NeF):
    def __init__(self, in_features: int, out_features: int, hidden_dim: int, num_filters: int, weight_scale: float):
        super().__init__()
        if num_filters < 1:
            raise ValueError(f"num_filters={num_filters}: needs at least 1")
        self.in_features, self.out_features = in_features, out_features
        self.hidden_dim, self.num_filters, self.weight_scale = hidden_dim, num_filters, float(weight_scale)
        self.linears = nn.ModuleList(nn.Linear(hidden_dim, hidden_dim) for _ in range(num_filters - 1))
        self.output = nn.Linear(hidden_dim, out_features)

    def _reset_linears(self, generator: torch.Generator) -> None:
        for layer in self.linears:
            uniform_(layer.weight, math.sqrt(self.weight_scale / self.hidden_dim), generator)
            nn.init.zeros_(layer.bias)
        variance_scaling_uniform_(self.output.weight, 2.0, generator)  # he_uniform
        nn.init.zeros_(self.output.bias)

    def filter(self, i: int, xf: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Filter i on feature-major points xf (in, P) -> (hidden, P)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = feature_major(x)
        z = self.filter(0, xf)
        for i, layer in enumerate(self.linears, start=1):
            z = self.filter(i, xf) * fm_linear(layer, z)
        return point_major(fm_linear(self.output, z), x)


class FourierNet(_MFN):
    def __init__(self, in_features: int = 2, out_features: int = 1, hidden_dim: int = 8, num_filters: int = 8,
                 input_scale: float = 16.0, weight_scale: float = 6.0):
        super().__init__(in_features, out_features, hidden_dim, num_filters, weight_scale)
        self.input_scale = float(input_scale)
        self.filters = nn.ModuleList(nn.Linear(in_features, hidden_dim) for _ in range(num_filters))

    def reset_parameters(self, generator: torch.Generator) -> None:
        scale = self.input_scale / math.sqrt(self.num_filters)
        for f in self.filters:
            variance_scaling_uniform_(f.weight, scale, generator)
            uniform_(f.bias, math.pi, generator)
        self._reset_linears(generator)

    def filter(self, i: int, xf: torch.Tensor) -> torch.Tensor:
        return torch.sin(fm_linear(self.filters[i], xf))


class GaborFilter(nn.Module):
    """sin(W x + b) windowed by a Gaussian around ``mu`` with per-unit precision ``gamma``."""

    def __init__(self, in_features: int, hidden_dim: int):
        super().__init__()
        self.mu = nn.Parameter(torch.empty(in_features, hidden_dim))
        self.gamma = nn.Parameter(torch.empty(hidden_dim))
        self.linear = nn.Linear(in_features, hidden_dim)

    def forward(self, xf: torch.Tensor) -> torch.Tensor:
        """Feature-major points (in, P) -> (hidden, P)."""
        sq_dist = (xf ** 2).sum(0) + (self.mu ** 2).sum(0)[:, None] - 2 * self.mu.T @ xf
        return torch.exp(-0.5 * sq_dist * self.gamma[:, None]) * torch.sin(fm_linear(self.linear, xf))


class GaborNet(_MFN):
    def __init__(self, in_features: int = 2, out_features: int = 1, hidden_dim: int = 15, num_filters: int = 10,
                 input_scale: float = 256.0, alpha: float = 1 / 6, beta: float = 1.0, weight_scale: float = 6.0):
        super().__init__(in_features, out_features, hidden_dim, num_filters, weight_scale)
        self.input_scale, self.alpha, self.beta = float(input_scale), float(alpha), float(beta)
        self.filters = nn.ModuleList(GaborFilter(in_features, hidden_dim) for _ in range(num_filters))

    def reset_parameters(self, generator: torch.Generator) -> None:
        scale = self.input_scale / math.sqrt(self.num_filters)
        concentration = torch.tensor(self.alpha / (self.num_filters + 1))
        for f in self.filters:
            truncated_normal_(f.mu, math.sqrt(1.0 / self.in_features), generator)  # flax lecun_normal
            with torch.no_grad():
                g = torch._standard_gamma(concentration.expand(self.hidden_dim).contiguous(), generator=generator)
                f.gamma.copy_(g / self.beta)
            # per output unit: variance_scaling(sqrt(gamma) * scale, fan_in, uniform)
            variance_scaling_uniform_(f.linear.weight, torch.sqrt(f.gamma.detach())[:, None] * scale, generator)
            uniform_(f.linear.bias, math.pi, generator)
        self._reset_linears(generator)

    def filter(self, i: int, xf: torch.Tensor) -> torch.Tensor:
        return self.filters[i](xf)
