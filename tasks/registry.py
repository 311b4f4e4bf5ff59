"""Modality name (``task.name``, stored in every store) -> the class that owns its signals."""
import importlib

from nefs.errors import FitnefError

MODALITIES = {"image": "tasks.image.modality:ImageModality", "shape": "tasks.shape.modality:ShapeModality"}


def modality_class(name: str):
    if name not in MODALITIES:
        raise FitnefError(f"unknown task {name!r}; available: {', '.join(sorted(MODALITIES))}")
    module, cls = MODALITIES[name].split(":")
    return getattr(importlib.import_module(module), cls)
