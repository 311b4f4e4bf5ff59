"""ReLU MLP as fit-a-nef builds it: ``num_layers`` hidden ReLU layers, then a linear output."""
import torch
from torch import nn

from .base import NeF, feature_major, fm_linear, point_major
from .init import glorot_uniform_


class MLP(NeF):
    def __init__(self, in_features: int = 2, out_features: int = 1, hidden_dim: int = 15, num_layers: int = 3):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP num_layers={num_layers}: needs at least 1")
        self.in_features, self.out_features = in_features, out_features
        dims = [in_features] + [hidden_dim] * num_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.output = nn.Linear(hidden_dim, out_features)

    def reset_parameters(self, generator: torch.Generator) -> None:
        for layer in [*self.layers, self.output]:
            glorot_uniform_(layer.weight, generator)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = feature_major(x)
        for layer in self.layers:
            h = torch.relu(fm_linear(layer, h))
        return point_major(fm_linear(self.output, h), x)
