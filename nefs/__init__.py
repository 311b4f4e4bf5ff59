"""fitnef: fit neural datasets (one small neural field per signal) with PyTorch."""
from .mfn import FourierNet, GaborNet
from .mlp import MLP
from .rffnet import RFFNet
from .siren import SIREN

__all__ = ["SIREN", "MLP", "RFFNet", "FourierNet", "GaborNet", "open_store"]


def open_store(path, **options):
    """Open a fitted neural dataset (see ``nefs.store.NefStore``; ``options``: ``nefs.store.open_store``'s,
    e.g. ``lock_timeout`` in seconds)."""
    from .store import open_store as _open   # zarr (~0.8 s) loads with the first store, not with the NeF classes

    return _open(path, **options)
