"""``num_parallel_nefs=auto``: pick the chunk size from a short probe on the current device.

On a GPU, throughput grows with the chunk until the device is saturated, and memory bounds it:
the probe doubles the chunk while a few training steps get at least 10% more NeF-steps per second and
peak memory stays within half of what is free. On a CPU the engine's micro-batch (cache-sized
sub-chunks) already decides the compute shape, so the chunk only sets how often rows are written.
"""
import logging
import time
from typing import Callable, Optional

import numpy as np
import torch

log = logging.getLogger(__name__)

SIZES = (256, 512, 1024, 2048, 4096, 8192, 16384, 32768)


def choose_num_parallel(fitter, make: Callable, rows: np.ndarray, device: torch.device,
                        micro_batch: Optional[int], steps: int = 3) -> int:
    if device.type != "cuda":
        chosen = micro_batch if isinstance(micro_batch, int) else 256
        log.info("num_parallel_nefs=auto: %d on %s (the engine splits it into cache-sized micro-batches)",
                 chosen, device)
        return chosen
    free, _ = torch.cuda.mem_get_info(device)
    best, best_rate, report = SIZES[0], 0.0, []
    for size in SIZES:
        probe_rows = np.resize(rows, size)  # repeat rows when the range is smaller
        try:
            params, problem = make(probe_rows)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            coords, targets, batched = problem.train_batch(0)
            # the engine's own step (chosen at the first size, nefs/step_choice.py); the plan hands the probe an
            # uncompiled engine: compiling per probed size would cost more than it tells
            grad = fitter.grad_fn(problem, batched)
            grad(params, coords, targets)  # warm-up (the first size: the step's choice)
            torch.cuda.synchronize(device)
            t = time.perf_counter()
            for step in range(steps):
                coords, targets, _ = problem.train_batch(step)
                grad(params, coords, targets)
            torch.cuda.synchronize(device)
            rate = size * steps / (time.perf_counter() - t)
            peak = torch.cuda.max_memory_allocated(device) - base
        except torch.cuda.OutOfMemoryError:
            report.append(f"{size}: out of memory")
            break
        finally:
            torch.cuda.empty_cache()
        report.append(f"{size}: {rate:.0f} NeF-steps/s, {peak / 2**20:.0f} MiB")
        if rate < 1.1 * best_rate or peak > 0.5 * free:
            break
        best, best_rate = size, rate
        if size >= len(rows):
            break
    log.info("num_parallel_nefs=auto: %d (probe %s)", best, "; ".join(report))
    return best
