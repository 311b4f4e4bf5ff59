"""How a run executes, as opposed to what it computes: shards of the index range, the device of a
shard, and the run facts a store keeps for later tools (``tasks.status``, ``tasks.inspect``).

Sharding: ``task.shard=i task.num_shards=n`` fits the i-th of n contiguous, near-equal parts of
[start_idx, end_idx), cut at the store's chunk boundaries. Shards are disjoint, so n processes (a joblib
or SLURM multirun) fill one store, and as no two of them share a chunk file they write without a lock;
a NeF's result does not depend on the range it was fitted in, so the store equals a 1-process fit.
"""
from typing import Optional, Tuple

import torch
from omegaconf import DictConfig, OmegaConf

from nefs.errors import FitnefError

from .data_source import resolve_data_path


def shard_bounds(start: int, end: int, num_shards: int, chunk_rows: int = 1) -> list:
    """[(lo, hi)] of ``num_shards`` contiguous parts of [start, end) whose inner boundaries fall on the
    store's chunk boundaries (multiples of ``chunk_rows``), so that no two shards write one chunk file and
    shards need no lock for their rows. Each shard gets a near-equal number of the range's chunk pieces
    (counts differ by <= 1); with 1-row chunks that is near-equal rows (sizes differ by <= 1). A range of
    fewer pieces than shards is split by rows instead, unaligned (those writes take the store's lock)."""
    pieces = _chunk_cuts(start, end, max(1, int(chunk_rows)))  # piece j is [pieces[j], pieces[j + 1])
    if len(pieces) - 1 < num_shards:
        pieces = list(range(start, end + 1))
    p = len(pieces) - 1
    return [(pieces[p * k // num_shards], pieces[p * (k + 1) // num_shards]) for k in range(num_shards)]


def _chunk_cuts(start: int, end: int, chunk_rows: int) -> list:
    """start, the multiples of chunk_rows strictly inside (start, end), end."""
    first = (start // chunk_rows + 1) * chunk_rows
    return [start, *range(first, end, chunk_rows), end] if end > start else [start]


def shard_settings(task_cfg) -> Tuple[Optional[int], int]:
    """(shard, num_shards) from ``task.shard`` / ``task.num_shards``, checked."""
    raw_n = task_cfg.get("num_shards", 1)
    shard = task_cfg.get("shard", None)
    try:
        num_shards = 1 if raw_n is None else int(raw_n)
    except (TypeError, ValueError):
        raise FitnefError(f"task.num_shards={raw_n!r}: must be a positive integer") from None
    if num_shards < 1:
        raise FitnefError(f"task.num_shards={num_shards}: must be >= 1")
    if shard is None:
        if num_shards > 1:
            raise FitnefError(f"task.num_shards={num_shards} but task.shard is not set; give task.shard=<0..{num_shards - 1}>"
                              f" (all at once: -m task.shard='range({num_shards})')")
        return None, num_shards
    shard = int(shard)
    if not 0 <= shard < num_shards:
        raise FitnefError(f"task.shard={shard}: must be in 0..{num_shards - 1} (task.num_shards={num_shards})")
    return shard, num_shards


def shard_range(task_cfg, start: int, end: int, chunk_rows: int = 1) -> Tuple[int, int, Optional[dict]]:
    """This process's [lo, hi) of [start, end), aligned to the store's ``chunk_rows`` (see shard_bounds),
    and the sharding record for the store (None: unsharded)."""
    shard, num_shards = shard_settings(task_cfg)
    if shard is None:
        return start, end, None
    lo, hi = shard_bounds(start, end, num_shards, chunk_rows)[shard]
    return lo, hi, {"num_shards": num_shards, "start": start, "end": end}


def shard_device(device: torch.device, requested: str, shard: Optional[int]) -> torch.device:
    """Round-robin shards over the visible CUDA devices when the device was left to us (auto/cuda)."""
    if shard is None or device.type != "cuda" or str(requested) not in ("auto", "cuda"):
        return device
    count = torch.cuda.device_count()
    return torch.device("cuda", shard % count) if count > 1 else device


def dataset_record(cfg: DictConfig) -> dict:
    """The dataset config as run (path included, made absolute the way the readers resolve it:
    relative paths are under $DATA_PATH, default ./data), so tools can reload it from the store."""
    d = OmegaConf.to_container(cfg.dataset, resolve=True)
    if d.get("path") not in (None, ""):
        d["path"] = str(resolve_data_path(d["path"]).absolute())
    return d


def run_attrs(cfg: DictConfig, sharding: Optional[dict]) -> dict:
    """Store attributes recorded by every fit (latest run wins): ``dataset``, ``export`` (the default format of
    scripts.export_nefs), and ``shards`` if sharded."""
    out = {"dataset": dataset_record(cfg)}
    if cfg.get("export") is not None:
        out["export"] = OmegaConf.to_container(cfg.export, resolve=True)
    if sharding is not None:
        out["shards"] = sharding
    return out
