"""N models as one pytree: stacked parameters (leading dim N), evaluated with vmap(functional_call).

This is the torch.func ensembling recipe: one template ``nn.Module`` supplies the computation, a dict
of stacked tensors supplies N sets of weights. ``ParamLayout`` fixes the order in which a NeF's
parameters are concatenated into one flat row of the store.
"""
import json
import math
from dataclasses import dataclass
from typing import Dict, Sequence

import numpy as np
import torch
from torch.func import functional_call

from .base import NeF
from .keyed import key

Params = Dict[str, torch.Tensor]


@dataclass(frozen=True)
class ParamLayout:
    names: tuple
    shapes: tuple

    @classmethod
    def of(cls, module: torch.nn.Module) -> "ParamLayout":
        named = list(module.named_parameters())
        return cls(tuple(n for n, _ in named), tuple(tuple(p.shape) for _, p in named))

    @property
    def sizes(self) -> list:
        return [math.prod(s) for s in self.shapes]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def flatten(self, params: Params) -> torch.Tensor:
        """Stacked params (N, ...) -> rows (N, P)."""
        n = params[self.names[0]].shape[0]
        return torch.cat([params[name].reshape(n, -1) for name in self.names], dim=1)

    def unflatten(self, rows) -> Params:
        """Rows (N, P) -> stacked params; a single row (P,) -> unstacked params."""
        rows = torch.as_tensor(np.asarray(rows)) if not isinstance(rows, torch.Tensor) else rows
        lead = rows.shape[:-1]
        if rows.shape[-1] != self.size:
            raise ValueError(f"row has {rows.shape[-1]} values, layout expects {self.size}")
        parts = torch.split(rows, self.sizes, dim=-1)
        return {n: p.reshape(*lead, *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def to_json(self) -> list:
        return [{"name": n, "shape": list(s)} for n, s in zip(self.names, self.shapes)]

    @classmethod
    def from_json(cls, items) -> "ParamLayout":
        if isinstance(items, str):
            items = json.loads(items)
        return cls(tuple(i["name"] for i in items), tuple(tuple(i["shape"]) for i in items))


def _draw(template: NeF, seed: int) -> Params:
    gen = torch.Generator().manual_seed(seed)
    template.reset_parameters(gen)
    return {n: p.detach().clone() for n, p in template.named_parameters()}


def init_stacked(template: NeF, seeds: Sequence[int], indices: Sequence[int], fixed_init: bool,
                 device=None) -> Params:
    """Initial params for NeFs with the given (seed, index) pairs, stacked on dim 0.

    fixed_init: every NeF of a seed starts from the draw keyed by the seed alone; otherwise each
    NeF draws from a key of (seed, index). Either way NeF i's start is independent of its chunk.
    ``template`` must live on the CPU (its parameters are overwritten).
    """
    cache: dict = {}
    rows = []
    for s, i in zip(seeds, indices):
        k = key(int(s)) if fixed_init else key(int(s), int(i))
        if k not in cache:
            cache[k] = _draw(template, k)
        rows.append(cache[k])
    names = [n for n, _ in template.named_parameters()]
    return {n: torch.stack([r[n] for r in rows]).to(device) for n in names}


def stacked_forward(template: torch.nn.Module, batched_coords: bool = False):
    """f(params (N, ...), coords) -> (N, ..., out); coords shared (P, D) or per NeF (N, P, D)."""

    def one(p, x):
        return functional_call(template, p, (x,))

    return torch.vmap(one, in_dims=(0, 0 if batched_coords else None))
