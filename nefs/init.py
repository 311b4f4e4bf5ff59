"""Initialisers that draw from an explicit ``torch.Generator``.

Keyed randomness is an invariant of the engine: NeF i must start from the same weights whatever
chunk it is fitted in, so no initialiser may touch the global RNG. Each function fills a tensor in
place and returns it, like ``torch.nn.init``, but takes the generator as an argument.
"""
import math

import torch


def uniform_(t: torch.Tensor, bound, generator: torch.Generator) -> torch.Tensor:
    """U(-bound, bound); ``bound`` may be a tensor that broadcasts against ``t``."""
    with torch.no_grad():
        t.uniform_(0.0, 1.0, generator=generator)
        t.mul_(2.0).sub_(1.0).mul_(bound)
    return t


def normal_(t: torch.Tensor, std, generator: torch.Generator) -> torch.Tensor:
    with torch.no_grad():
        t.normal_(0.0, 1.0, generator=generator).mul_(std)
    return t


def fan_in(weight: torch.Tensor) -> int:
    """Fan-in of a ``nn.Linear`` weight of shape (out, in)."""
    return weight.shape[1]


def glorot_uniform_(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    fan_out, fan_in_ = weight.shape
    return uniform_(weight, math.sqrt(6.0 / (fan_in_ + fan_out)), generator)


def variance_scaling_uniform_(weight: torch.Tensor, scale, generator: torch.Generator) -> torch.Tensor:
    """JAX's ``variance_scaling(scale, "fan_in", "uniform")``: U(-sqrt(3 scale / fan_in), +)."""
    return uniform_(weight, torch.sqrt(torch.as_tensor(3.0 * scale / fan_in(weight))), generator)


def variance_scaling_normal_(weight: torch.Tensor, scale, generator: torch.Generator) -> torch.Tensor:
    """JAX's ``variance_scaling(scale, "fan_in", "normal")``: N(0, scale / fan_in)."""
    return normal_(weight, math.sqrt(scale / fan_in(weight)), generator)


def truncated_normal_(t: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """Normal truncated at two standard deviations, rescaled to keep the requested std.

    Matches JAX's ``truncated_normal`` variance scaling (the constant is the std of a unit normal
    truncated to [-2, 2])."""
    with torch.no_grad():
        t.normal_(0.0, 1.0, generator=generator)
        bad = t.abs() > 2
        while bad.any():  # resample the tails; cheap, tensors are tiny
            t[bad] = torch.empty(int(bad.sum()), dtype=t.dtype).normal_(0.0, 1.0, generator=generator).to(t.device)
            bad = t.abs() > 2
        t.mul_(std / 0.87962566103423978)
    return t
