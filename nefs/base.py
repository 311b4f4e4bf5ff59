"""What every neural field shares: a coordinate → value map with keyed initialisation."""
import torch
from torch import nn


class NeF(nn.Module):
    """A neural field: maps coordinates (..., in_features) to values (..., out_features).

    Subclasses implement ``reset_parameters(generator)`` drawing only from the given generator,
    so the engine can give every NeF its own reproducible initial weights (see ``nefs.stack``).
    """

    in_features: int
    out_features: int

    def reset_parameters(self, generator: torch.Generator) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def feature_major(x: torch.Tensor) -> torch.Tensor:
    """(..., D) points -> (D, P) features-by-points.

    NeFs compute their hidden layers on this layout (``fm_linear``): for the small hidden sizes of
    NeFs, ``W @ h`` with the long points axis last runs several times faster on CPU than the
    point-major ``h @ W.T`` once vmapped and compiled (measured in scripts/bench.py)."""
    return x.reshape(-1, x.shape[-1]).T


def point_major(h: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(F, P) back to ``like``'s leading shape: (..., F)."""
    return h.T.reshape(*like.shape[:-1], h.shape[0])


def fm_linear(layer: torch.nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """``layer`` applied to feature-major h (in, P) -> (out, P)."""
    return torch.addmm(layer.bias[:, None], layer.weight, h)
