"""Keyed randomness: every random draw is a pure function of (seed, NeF index, step, ...).

A NeF must not know it has neighbours, so its random numbers may not depend on which chunk it was
fitted in or on how much of a global RNG other NeFs consumed first. Integers are hashed with the
splitmix64 finaliser; tensor versions use wrapping int64 arithmetic so they run on any device.
"""
import torch

_M64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_C1 = 0xBF58476D1CE4E5B9
_C2 = 0x94D049BB133111EB


def _signed(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


def _mix(x: int) -> int:
    x = (x + _GOLDEN) & _M64
    x = ((x ^ (x >> 30)) * _C1) & _M64
    x = ((x ^ (x >> 27)) * _C2) & _M64
    return x ^ (x >> 31)


def key(*parts: int) -> int:
    """A 63-bit seed (for ``torch.Generator.manual_seed``) from integers, order-sensitive."""
    h = 0
    for p in parts:
        h = _mix(h ^ (int(p) & _M64))
    return h >> 1


def _srl(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix_t(x: torch.Tensor) -> torch.Tensor:
    x = x + _signed(_GOLDEN)
    x = (x ^ _srl(x, 30)) * _signed(_C1)
    x = (x ^ _srl(x, 27)) * _signed(_C2)
    return x ^ _srl(x, 31)


def keyed_uniform(seed: torch.Tensor, index: torch.Tensor, step, n: int) -> torch.Tensor:
    """Uniform [0, 1) float64 of shape (N, n): row r depends only on (seed[r], index[r], step[r]).

    ``step`` is an int shared by all rows, or an (N,) tensor of per-row steps."""
    step = step.long() if isinstance(step, torch.Tensor) else int(step)
    h = _mix_t(_mix_t(_mix_t(seed.long()) ^ index.long()) ^ step)
    cols = torch.arange(n, device=h.device, dtype=torch.long)
    u = _mix_t(h[:, None] ^ _mix_t(cols)[None, :])
    return _srl(u, 11).double() * (1.0 / (1 << 53))


def keyed_subset(seed: torch.Tensor, index: torch.Tensor, step, n: int, k: int) -> torch.Tensor:
    """For each row, ``k`` distinct indices out of ``n``: a keyed random permutation's first k."""
    return torch.argsort(keyed_uniform(seed, index, step, n), dim=1)[:, :k]
