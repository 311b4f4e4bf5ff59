"""What a modality (images, shapes, audio, ...) plugs into, and the registry through which a store
finds the modality that decodes its rows.

The engine, the store and every generic tool (fit, inspect, status, loggers, tune) talk to a modality
only through the two protocols below, so a new kind of signal is one package that implements them
plus its config files. ``nefs/`` names no modality: a store records the import path of the class that
wrote it (``modality.class``), and ``lookup`` imports exactly that module on first use.
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from importlib import metadata
from typing import Callable, ClassVar, Dict, Optional, Protocol

import numpy as np
import torch

from .errors import FitnefError

Params = Dict[str, torch.Tensor]

# Modalities installed by other packages can announce themselves here (setup.cfg entry points); a store
# written before stores recorded their modality's class is decoded through it.
ENTRY_POINT_GROUP = "fitnef.modalities"


@dataclass(frozen=True)
class Metric:
    """The headline quality of a fitted NeF (PSNR for images, IoU for shapes), and which way is better."""

    name: str
    unit: str = ""
    higher_is_better: bool = True

    def reached(self, value: torch.Tensor, target: float) -> torch.Tensor:
        return value >= target if self.higher_is_better else value <= target

    def format(self, mean: float, std: float) -> str:
        if not (math.isfinite(mean) and math.isfinite(std)):
            return f"{self.name} -"
        unit = f" {self.unit}" if self.unit else ""
        return f"{self.name} {mean:.2f} ± {std:.2f}{unit}"

    def to_json(self) -> dict:
        return {"name": self.name, "unit": self.unit, "higher_is_better": self.higher_is_better}

    @classmethod
    def from_json(cls, value) -> "Metric":
        if isinstance(value, str):  # stores written before the metric carried its unit
            return cls(value, "dB" if value == "psnr" else "")
        return cls(str(value["name"]), str(value.get("unit", "")), bool(value.get("higher_is_better", True)))


class Problem(Protocol):
    """What a modality gives the engine for a chunk of NeFs."""

    per_nef_fields: tuple   # attribute names of tensors with one row per NeF (sliced when chunks split)
    # optional ``fused_loss``: "mse" | "bce_logits", the loss's name for the fused step (nefs/fused)

    def train_batch(self, step):
        """(coords, targets, batched) for a step (int, or (N,) per-NeF steps): coords (P, D) shared,
        or (N, P, D) per NeF when ``batched``; targets (N, P, C)."""

    @staticmethod
    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar loss of ONE NeF (pure; called under vmap)."""

    def metric(self, forward: Callable, params: Params) -> torch.Tensor:
        """(N,) quality of each NeF on its whole signal (the modality's ``metric``)."""


class Modality(Protocol):
    """A kind of signal: where its data comes from, how a chunk is trained, how a row is decoded."""

    name: ClassVar[str]              # stored in every store (``modality.name``)
    metric: ClassVar[Metric]
    in_features: int                 # coordinate dimensions
    out_features: int                # values per coordinate

    @classmethod
    def from_data(cls, data, task_cfg) -> "Modality":
        """The signals of a loaded dataset (``dataset._target_(...).load()``), checked against the task."""

    def __len__(self) -> int: ...

    def attrs(self) -> dict:
        """What a store needs to decode its rows without the dataset (JSON)."""

    def row_arrays(self) -> dict:
        """Per-signal arrays (M, ...) that the store keeps with each row (e.g. a shape's frame)."""

    def signal_bytes(self, i: int) -> bytes:
        """Signal i's content, hashed into the store's data fingerprint (nefs/fingerprint.py)."""

    # optional ``prefetch(signal_idx)``: load these signals now (a modality that reads its signals lazily decodes
    # them in parallel); the fingerprint gives it each store chunk's signals before hashing them

    def problem(self, signal_idx, seeds, nef_idx, train_cfg, device) -> Problem: ...

    @classmethod
    def reconstruct(cls, store, flat_params: torch.Tensor, device="cpu") -> torch.Tensor:
        """Rows' parameters -> decoded signals on the dataset's own grid."""

    @classmethod
    def inspect(cls, cfg, store, out, data_path: Optional[str], device) -> dict:
        """Metrics and figures of a store's done rows into the folder ``out``; returns the report,
        whose ``lines`` are printed."""

    def log_panel(self, forward: Callable, params: Params, problem, k: int) -> Optional[np.ndarray]:
        """A uint8 picture of the first ``k`` NeFs of a chunk during training (or None)."""


# -- the registry --------------------------------------------------------------------------------------
_REGISTRY: dict = {}


def register(cls):
    """Class decorator: make a modality findable by its name (decoding a store looks it up)."""
    _REGISTRY[cls.name] = cls
    return cls


def locator(cls) -> str:
    """The import path a store records so that later readers can load the class: ``module:Class``."""
    return f"{cls.__module__}:{cls.__qualname__}"


def load(path: str):
    """The class at ``module:Class`` (a task config's ``modality`` key, a store's ``modality.class``)."""
    module, _, name = str(path).partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise FitnefError(f"cannot load modality {path!r} ({type(e).__name__}: {e}); expected module:Class") from None
    register(cls)
    return cls


def lookup(name: str, path: Optional[str] = None):
    """The modality class called ``name``: registered already, at ``path``, or announced by an entry point."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if path:
        return load(path)
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return register(ep.load())
    known = sorted(set(_REGISTRY) | {ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})
    raise FitnefError(f"no modality {name!r} is installed (known: {', '.join(known) or 'none'})")
