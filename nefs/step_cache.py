"""Where ``task.train.kernel=auto`` remembers what it measured: one JSON object per (device, torch and triton
versions, NeF, batch shape, precision, candidates), in a small file under the user's cache directory. An
unreadable file is ignored (and replaced on the next write); a write is atomic (temp file + rename)."""
import json
import logging
import os
import platform
from pathlib import Path
from typing import Optional

import torch

log = logging.getLogger(__name__)


def default_cache_file() -> Path:
    """``$XDG_CACHE_HOME/fitnef/step_choice.json`` (``~/.cache`` when unset), as the XDG spec says."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fitnef" / "step_choice.json"


class ChoiceCache:
    """Earlier decisions, one JSON object per key; an unreadable file is ignored (and replaced on the next write)."""

    def __init__(self, path: Optional[Path]):
        self.path = None if path is None else Path(path)

    def _read(self) -> dict:
        if self.path is None or not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            return data
        except (OSError, ValueError) as e:
            log.warning("ignoring the step-choice cache %s (%s)", self.path, str(e)[:120])
            return {}

    def get(self, key: str) -> Optional[dict]:
        entry = self._read().get(key)
        return entry if isinstance(entry, dict) and isinstance(entry.get("chosen"), str) else None

    def put(self, key: str, entry: dict) -> None:
        if self.path is None:
            return
        data = self._read()
        data[key] = entry
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, self.path)   # a reader never sees half a file
        except OSError as e:   # a read-only home costs the next run a measurement, nothing more
            log.warning("cannot write the step-choice cache %s (%s)", self.path, e)


def cache_key(template: torch.nn.Module, problem, args: tuple, settings,
              cands: list) -> str:
    params, coords, targets = args
    device = next(iter(params.values())).device
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return json.dumps({
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "triton": triton_version,
        "nef": repr(template), "shapes": {k: list(v.shape) for k, v in params.items()},
        "coords": list(coords.shape), "targets": list(targets.shape), "problem": type(problem).__name__,
        "precision": settings.matmul_precision.value, "compile_mode": settings.compile_mode,
        "candidates": [c.name for c in cands]}, sort_keys=True)
