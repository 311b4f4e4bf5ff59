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
