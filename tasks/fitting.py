"""Fit a range of NeF indices into a store, in four named steps:

1. ``plan_run`` (tasks/plan.py): every setting checked, the execution resolved (the chunk probed), the shard
   cut, the pending rows read; nothing written yet. The plan is frozen from here on;
2. ``open_run_store``: create the store (chunked by the plan's chunk) or resume it (identity checked);
3. ``fit_rows``: the engine (nefs/engine.py) fits the pending rows, a ``RowWriter`` writes them;
4. ``summarise``: one ``FitSummary`` of what was fitted.

Modality-agnostic: the modality (named by ``task.modality``) turns signal indices into a ``Problem``.
"""
import logging
import math
import time
from dataclasses import dataclass
from importlib import metadata
from typing import Optional

import numpy as np
import torch

from nefs.engine import ChunkFitter
from nefs.fingerprint import verify_signals
from nefs.locking import check_store_path
from nefs.modality import locator
from nefs.store import NefStore

from .identity import upgrade_identity
from .loggers import make_logger
from .plan import RunPlan, build_engine, plan_run  # noqa: F401  (build_engine: part of this module's API)
from .preempt import Preemption
from .progress import Progress
from .runs import dataset_record, run_attrs
from .threads import share_cpus_between_steps

log = logging.getLogger(__name__)


def versions() -> dict:
    out = {}
    for pkg in ("fitnef", "torch", "zarr", "numpy", "hydra-core"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class FitSummary:
    fitted: int
    total_done: int
    total: int
    metric_mean: float      # the modality's headline metric (``metric``: psnr, iou, ...) of the NeFs fitted
    metric_std: float
    nefs_per_s: float       # fitted / wall time of the fitting loop (compilation and writes included)
    train_s: float          # time in training steps, compilation excluded
    wall_s: float
    warmup_s: float         # first step: torch.compile
    store: str
    metric: str = "psnr"
    unit: str = "dB"
    device: str = "cpu"
    num_parallel_nefs: int = 0
    micro_batch: Optional[int] = None
    peak_mem_mb: float = 0.0    # CUDA max allocated, or the process's peak RSS on CPU
    start_idx: int = 0          # the range this process fitted (its shard's part when sharded)
    end_idx: int = 0
    shard: Optional[int] = None
    setup_s: float = 0.0        # from fit() to the first step: data, store, init, probe
    write_s: float = 0.0        # store writes (inside wall_s)
    target: Optional[float] = None
    reached: Optional[int] = None       # with a target: NeFs fitted that reached it
    median_steps: Optional[float] = None
    step: str = ""              # the training step that ran (task.train.kernel=auto: the one measured fastest)

    def line(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        head = f"fitted {self.fitted} NeFs ({self.total_done}/{self.total} done in store): "
        if not self.fitted:
            head = f"nothing left to fit ({self.total_done}/{self.total} done in store): store "
        score = (f"{self.metric} {self.metric_mean:.2f} ± {self.metric_std:.2f}{unit}"
                 if math.isfinite(self.metric_mean) else f"{self.metric} -")
        reach = ""
        if self.target is not None and self.fitted:
            reach = (f", {self.reached}/{self.fitted} reached {self.metric} {self.target:g}{unit} "
                     f"(median {self.median_steps:.0f} steps)")
        speed = f", {self.nefs_per_s:.1f} NeFs/s" if self.fitted else ""
        return f"{head}{score}{reach}{speed}, store {self.store}"


def open_run_store(plan: RunPlan):
    """(store, plan): create the store with the plan's chunk, or reopen it (refused if its identity differs).
    The plan comes back as it was, unless a shard started beside this one created the store with other chunks
    than this one planned: then cut at those (a new plan)."""
    cls = type(plan.modality)
    store = NefStore.create_or_open(
        plan.cfg.task.nef_dir, identity=plan.identity, num_rows=plan.total, layout=plan.layout, rows=plan.rows(),
        chunk_rows=plan.execution.chunk,
        modality={"name": cls.name, "class": locator(cls), **plan.modality.attrs()},
        nef=plan.nef_record, metric=cls.metric, versions=versions(), upgrade=upgrade_identity)
    if plan.sharding is not None and store.chunk_rows != plan.execution.chunk:
        recut = plan.cut_at(store.chunk_rows)   # the existing store's chunks, peeked when planned, or a race
        if recut.start_end != plan.start_end:
            log.info("store %s was created with %d-row chunks by another shard; cutting this shard there",
                     store.path, store.chunk_rows)
            plan = recut
    verify_signals(store, plan.modality.signal_bytes, plan.start, plan.end, dataset_record(plan.cfg),  # same data?
                   prefetch=getattr(plan.modality, "prefetch", None))  # lazily read signals: a chunk at a time
    store.update_attrs(run_attrs(plan.cfg, plan.sharding))  # dataset location, sharding: for inspect / status
    return store, plan


class RowWriter:
    """Finished NeFs -> the store, in one locked write per chunk's worth (a crash before a write only
    costs a refit of those rows); keeps what the summary needs."""

    def __init__(self, store: NefStore, plan: RunPlan, progress: Progress, logger=None):
        self.store, self.layout, self.chunk = store, plan.layout, plan.execution.chunk
        self.exclusive = None if plan.sharding is None else (plan.start, plan.end)
        self.progress, self.logger = progress, logger
        self.buffer: list = []     # (rows, flat params, metric, steps) fitted, not yet written
        self.metrics: list = []
        self.steps: list = []
        self.write_s = 0.0

    @property
    def fitted(self) -> int:
        return sum(len(m) for m in self.metrics)

    def emit(self, rows: np.ndarray, res) -> None:
        metric, steps = res.metric.cpu().numpy(), res.steps.cpu().numpy()
        self.buffer.append((rows, self.layout.flatten(res.params).cpu().numpy(), metric, steps))
        self.metrics.append(metric)
        self.steps.append(steps)
        if sum(len(b[0]) for b in self.buffer) >= self.chunk:
            self.flush()
        self.progress.nefs_done(len(rows), np.concatenate(self.metrics))
        if self.logger is not None:
            self.logger.rows(rows, metric)

    def flush(self) -> None:
        if self.buffer:
            rows, flat, metric, steps = (np.concatenate(x) for x in zip(*self.buffer))
            order = np.argsort(rows)  # continuous batching finishes rows out of order
            t = time.perf_counter()
            self.store.write_rows(rows[order], flat[order], metric[order], steps[order],
                                  exclusive=self.exclusive)  # a shard's own chunks need no lock
            self.write_s += time.perf_counter() - t
            self.buffer.clear()


def fit_rows(plan: RunPlan, fitter: ChunkFitter, writer: RowWriter, pending: np.ndarray) -> float:
    """Fit ``pending`` through the engine; returns the training time. Rows finished before an
    interruption (Ctrl-C included) are written on the way out; a preemption signal or ``checkpoint_every``
    also saves the NeFs in flight, and a rerun continues them first (tasks/preempt.py)."""
    train_s = 0.0
    stream = fitter.target is not None and plan.execution.continuous
    try:
        with Preemption(plan, writer.store.path, writer.flush, fitter, stream) as preemption:
            state, rows, rest = preemption.resume(pending)
            if stream and (state is not None or len(rest)):
                train_s = fitter.fit_stream(rest, plan.make, plan.execution.chunk, writer.emit, resume=state)
            else:
                chunks = [rest[lo:lo + plan.execution.chunk] for lo in range(0, len(rest), plan.execution.chunk)]
                for i, rows in enumerate(([rows] if state is not None else []) + chunks):
                    res = fitter.fit(*plan.make(rows), resume=state if i == 0 else None, rows=rows)
                    train_s += res.train_s
                    writer.emit(rows, res)
            writer.flush()
            preemption.finish()
    finally:
        writer.flush()
    return train_s


def summarise(plan: RunPlan, store: NefStore, fitter: ChunkFitter, writer: RowWriter, train_s: float,
              wall_s: float, setup_s: float) -> FitSummary:
    metric = plan.modality.metric
    fitted = writer.fitted
    values = np.concatenate(writer.metrics) if fitted else store.metric[store.done]  # nothing fitted: the store's
    steps = np.concatenate(writer.steps) if fitted else np.zeros(0)
    target = plan.cfg.task.train.target
    reached = int(metric.reached(torch.as_tensor(values), float(target)).sum()) if target is not None and fitted else None
    return FitSummary(
        fitted=fitted, total_done=int(store.done.sum()), total=plan.total,
        metric_mean=float(values.mean()) if len(values) else math.nan,
        metric_std=float(values.std()) if len(values) else math.nan,
        nefs_per_s=fitted / wall_s if wall_s else 0.0, train_s=train_s, wall_s=wall_s, warmup_s=fitter.warmup_s,
        store=str(store.path), metric=metric.name, unit=metric.unit, device=str(plan.execution.device),
        num_parallel_nefs=plan.execution.chunk, micro_batch=fitter.unit,
        peak_mem_mb=peak_memory_mb(plan.execution.device), start_idx=plan.start, end_idx=plan.end,
        setup_s=setup_s, write_s=writer.write_s, shard=None if plan.sharding is None else int(plan.cfg.task.shard),
        target=None if target is None else float(target), reached=reached,
        median_steps=float(np.median(steps)) if target is not None and fitted else None, step=fitter.chosen_step)


def fit(cfg) -> FitSummary:
    t_setup = time.perf_counter()
    check_store_path(cfg.task.nef_dir)  # a path that cannot hold a store fails now, not after loading data
    plan = plan_run(cfg)
    store, plan = open_run_store(plan)
    fitter = build_engine(plan)
    pending = plan.pending
    log.info("store %s: %d of [%d, %d) to fit", store.path, len(pending), plan.start, plan.end)
    logger = make_logger(cfg, plan.modality, fitter.template)  # None unless logger=wandb
    progress = Progress(len(pending), int(cfg.task.train.num_steps), plan.modality.metric, cfg.task.log)
    fitter.on_step = share_cpus_between_steps(progress.hook(logger))  # tasks/threads.py: fits come and go
    writer = RowWriter(store, plan, progress, logger)
    t0 = time.perf_counter()
    train_s = fit_rows(plan, fitter, writer, pending)
    wall_s = time.perf_counter() - t0
    progress.close()
    summary = summarise(plan, store, fitter, writer, train_s, wall_s, t0 - t_setup)
    if logger is not None:
        logger.finish(summary)
    return summary


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
