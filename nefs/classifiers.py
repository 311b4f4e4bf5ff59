"""Weight-space classifiers: models that take a NeF's parameters and predict its signal's class.

``FlatMLP`` reads the flat parameter vector; it sees two NeFs that differ only by an order of
hidden neurons as different inputs. ``NeuronSets`` reads the NeF as a graph of neurons and pools
over every hidden layer's neurons (DeepSets, Zaheer et al. 2017, applied layer by layer as in
neural-functional networks), so its output is the same for every hidden-neuron order by
construction, not by training.
"""
from typing import List

import torch
from torch import nn

from .stack import ParamLayout
from .weight_space import WeightSpace, linear_chain


def mlp(dims: List[int], dropout: float = 0.0, last_activation: bool = False) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2 or last_activation:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class FlatMLP(nn.Module):
    """MLP on the (standardised) flat parameter vector."""

    def __init__(self, layout: ParamLayout, num_classes: int, hidden_dim: int = 256, num_layers: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        self.net = mlp([layout.size] + [hidden_dim] * num_layers + [num_classes], dropout)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        return self.net(flat)


class NeuronSets(nn.Module):
    """Hidden-neuron-permutation invariant classifier (DeepSets over the neurons of each layer).

    A forward pass over the NeF's own layers: the input coordinates get learned embeddings (they
    have a fixed order); neuron j of layer l is embedded from its bias and the set of its incoming
    edges, each edge being (weight, embedding of the source neuron), pooled by mean and max. The
    output neurons (fixed order) are embedded the same way and concatenated with the mean and max
    of every hidden layer's embeddings, then an MLP head classifies. Permuting a hidden layer's
    neurons permutes its embeddings and the edge sets of the next layer together, so every pooled
    value, and the prediction, stays the same."""

    def __init__(self, layout: ParamLayout, num_classes: int, hidden_dim: int = 64, head_dim: int = 128,
                 dropout: float = 0.1):
        super().__init__()
        self.layout = layout
        shapes = dict(zip(layout.names, layout.shapes))
        chain = linear_chain(layout)
        in_features = shapes[chain[0][0]][1]
        self.num_out = shapes[chain[-1][0]][0]
        d = hidden_dim
        self.inputs = nn.Parameter(torch.randn(in_features, d) * 0.5)
        self.edge = nn.ModuleList(mlp([1 + d, d, d], last_activation=True) for _ in chain)
        self.node = nn.ModuleList(mlp([1 + 2 * d, d, d], last_activation=True) for _ in chain)
        pooled = 2 * d * (len(chain) - 1) + self.num_out * d
        self.head = mlp([pooled, head_dim, num_classes], dropout)

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        ws = WeightSpace.from_flat(flat, self.layout)
        n = flat.shape[0]
        h = self.inputs.expand(n, -1, -1)                                   # (N, in, d)
        summary = []
        for layer, (w, b) in enumerate(zip(ws.weights, ws.biases)):
            out = w.shape[1]
            edges = torch.cat([w[..., None], h[:, None].expand(-1, out, -1, -1)], dim=-1)  # (N, out, in, 1+d)
            e = self.edge[layer](edges)
            msg = torch.cat([b[..., None], e.mean(2), e.amax(2)], dim=-1)   # (N, out, 1+2d)
            h = self.node[layer](msg)                                       # (N, out, d)
            if layer < len(ws.weights) - 1:
                summary += [h.mean(1), h.amax(1)]
        summary.append(h.reshape(n, -1))                                    # output neurons: fixed order
        return self.head(torch.cat(summary, dim=-1))
