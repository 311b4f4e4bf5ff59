"""What the engine's loops share: a chunk's result, rows of a Problem taken or put by index, the CPU's
cache-sized compute unit."""
import copy
import math
from dataclasses import dataclass
from enum import Enum

import torch

from .modality import Params


def take_rows(problem, index: torch.Tensor):
    """A copy of ``problem`` restricted to (or repeating) the NeFs at ``index``."""
    out = copy.copy(problem)
    for f in problem.per_nef_fields:
        setattr(out, f, getattr(problem, f)[index])
    return out


def assign_rows(problem, slots: torch.Tensor, other) -> None:
    """Put ``other``'s NeFs into ``problem``'s rows ``slots`` (in place)."""
    for f in problem.per_nef_fields:
        getattr(problem, f)[slots] = getattr(other, f)


@dataclass
class ChunkResult:
    params: Params          # final (or early-stopped) params, stacked
    metric: torch.Tensor    # (N,)
    steps: torch.Tensor     # (N,) steps each NeF was trained for
    train_s: float          # time in the training loop, warm-up excluded
    warmup_s: float = 0.0   # first step of the first chunk: compilation


class MicroBatch(str, Enum):
    """``task.train.micro_batch=auto`` on a CPU: as many NeFs per compiled call as keep its activations in cache."""

    CACHE = "cache"


# Activations of one compiled call that a CPU keeps in cache: measured on the 2-core EPYC of
# docs/performance.md, where SIREN-8 peaks at 64 NeFs, MLP-15 at 16-32 and SIREN-32 at 16 (784 points).
CPU_CACHE_BYTES = 1.5 * 2**20


def cache_sized_batch(template: torch.nn.Module, points: int) -> int:
    """NeFs per compiled call whose widest activation (points x width floats) fits CPU_CACHE_BYTES,
    as a power of two in [8, 256]."""
    width = max((p.shape[0] for p in template.parameters() if p.dim() == 2), default=1)
    fit = CPU_CACHE_BYTES / (4 * points * width)
    return int(min(256, max(8, 2 ** round(math.log2(max(fit, 1))))))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
