"""Fit a range of NeF indices into a store: index scheme, chunking, resume, progress, summary.

Modality-agnostic: the modality (tasks/registry.py) turns signal indices into a ``Problem``; the
engine (nefs/engine.py) fits a chunk; the store (nefs/store.py) keeps what is done.
"""
import copy
import hashlib
import logging
import os
import math
import time
from dataclasses import dataclass
from typing import Optional
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nefs.engine import ChunkFitter
from nefs.locking import check_store_path
from nefs.meta import load_init
from nefs.errors import FitnefError
from nefs.fingerprint import verify_signals
from nefs.probe import choose_num_parallel
from nefs.stack import ParamLayout, init_stacked
from nefs.store import NefStore

from .loggers import make_logger
from .registry import modality_class
from .runs import dataset_record, run_attrs, shard_device, shard_range

log = logging.getLogger(__name__)

# Keys that say how a run executes, not what it computes: they may differ between runs on one store.
RUN_ONLY_KEYS = ("device", "task.nef_dir", "task.train.start_idx", "task.train.end_idx",
                 "task.train.num_parallel_nefs", "task.train.multi_gpu", "task.train.compile",
                 "task.train.micro_batch", "task.train.continuous", "task.train.meta_init_path",
                 "task.log", "task.wandb", "task.shard", "task.num_shards", "dataset.path", "dataset.out_channels",
                 "logger", "hydra")


def identity(cfg: DictConfig) -> dict:
    """The resolved config minus run-only keys: what a store's NeFs depend on."""
    d = OmegaConf.to_container(cfg, resolve=True)
    for dotted in RUN_ONLY_KEYS:
        *parents, last = dotted.split(".")
        node = d
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return d


def resolve_device(name: str) -> torch.device:
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise FitnefError(f"device={name} but CUDA is not available here; use device=cpu or device=auto")
    if name != "cpu" and not name.startswith("cuda"):
        raise FitnefError(f"device={name!r} is not one of auto, cpu, cuda, cuda:<n>")
    return torch.device(name)


def build_nef(nef_cfg, in_features: int, out_features: int) -> torch.nn.Module:
    kwargs = OmegaConf.to_container(nef_cfg, resolve=True)
    kwargs.pop("name", None)
    try:
        return instantiate(kwargs, in_features=in_features, out_features=out_features)
    except Exception as e:  # hydra wraps constructor errors; show the cause in one line
        cause = e.__cause__ or e
        raise FitnefError(f"cannot build nef {nef_cfg.get('name')}: {cause}") from None


def build_optimization(cfg: DictConfig, num_steps: int):
    """(optimizer factory, schedule), tried once on a dummy tensor so that a bad value is a one-line
    error before anything is written."""
    try:
        schedule = instantiate(cfg.scheduler)
        lrs = [float(schedule(s)) for s in (0, max(num_steps - 1, 0))]
    except Exception as e:  # noqa: BLE001 - any failure here is a bad scheduler config
        raise FitnefError(f"bad scheduler config ({_cause(e)}); see conf/scheduler/") from None
    if num_steps < 1:
        raise FitnefError(f"task.train.num_steps={num_steps}: must be >= 1")
    if "lr" in cfg.optimizer:  # it would be silently overridden by the schedule's rate
        raise FitnefError(f"optimizer.lr={cfg.optimizer.lr}: the learning rate comes from the scheduler; "
                          f"use scheduler.value=... (constant) or the scheduler's own keys")
    if any(not lr >= 0 for lr in lrs):  # torch.optim would blame the optimizer for the schedule's rate
        raise FitnefError(f"learning rate {min(lrs)} from the scheduler: must be >= 0; set scheduler.value=... "
                          f"(constant) or the scheduler's own keys (conf/scheduler/)")
    try:
        optimizer = instantiate(cfg.optimizer)
        optimizer([torch.zeros(1)], lr=lrs[0])
    except Exception as e:  # noqa: BLE001 - torch.optim validates its arguments with ValueError/TypeError
        raise FitnefError(f"bad optimizer config ({_cause(e)}); see conf/optimizer/") from None
    return optimizer, schedule


def _cause(e: Exception) -> str:
    """The innermost message (Hydra wraps errors raised while instantiating)."""
    while e.__cause__ is not None:
        e = e.__cause__
    return f"{type(e).__name__}: {e}"


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
    psnr_mean: float
    psnr_std: float
    nefs_per_s: float       # fitted / wall time of the fitting loop (compilation and writes included)
    train_s: float          # time in training steps, compilation excluded
    wall_s: float
    warmup_s: float         # first step: torch.compile
    store: str
    metric: str = "psnr"
    device: str = "cpu"
    num_parallel_nefs: int = 0
    micro_batch: Optional[int] = None
    peak_mem_mb: float = 0.0    # CUDA max allocated, or the process's peak RSS on CPU
    start_idx: int = 0          # the range this process fitted (its shard's part when sharded)
    end_idx: int = 0
    shard: Optional[int] = None
    setup_s: float = 0.0        # from fit() to the first step: data, store, init, probe
    write_s: float = 0.0        # store writes (inside wall_s)

    def line(self) -> str:
        unit = " dB" if self.metric == "psnr" else ""
        return (f"fitted {self.fitted} NeFs ({self.total_done}/{self.total} done in store): "
                f"{self.metric} {self.psnr_mean:.2f} ± {self.psnr_std:.2f}{unit}, "
                f"{self.nefs_per_s:.1f} NeFs/s, store {self.store}")


def _chunks(rows: np.ndarray, size: int):
    for i in range(0, len(rows), size):
        yield rows[i:i + size]


def load_modality(cfg: DictConfig):
    """(modality, labels) for the configured dataset and task."""
    data = instantiate(cfg.dataset).load()
    return modality_class(cfg.task.name).from_data(data, cfg.task), data.labels


def fit(cfg: DictConfig) -> FitSummary:
    t_setup = time.perf_counter()
    check_store_path(cfg.task.nef_dir)  # a path that cannot hold a store fails now, not after loading data
    tr = cfg.task.train
    device = resolve_device(cfg.device)
    modality, labels = load_modality(cfg)
    seeds = [int(s) for s in cfg.task.seeds]
    if not seeds:
        raise FitnefError("task.seeds is empty; give at least one seed, e.g. task.seeds=[0]")
    m = len(modality)
    total = len(seeds) * m
    start = int(tr.start_idx)
    end = total if tr.end_idx is None else int(tr.end_idx)
    if not 0 <= start < end <= total:
        raise FitnefError(f"task.train.start_idx={start}, end_idx={end}: need 0 <= start < end <= {total} "
                          f"({len(seeds)} seeds x {m} signals)")
    start, end, sharding = shard_range(cfg.task, start, end)  # task.shard of task.num_shards: this part
    device = shard_device(device, cfg.device, cfg.task.get("shard"))
    auto_chunk = str(tr.num_parallel_nefs) == "auto"
    try:
        chunk = 256 if auto_chunk else int(tr.num_parallel_nefs)
    except ValueError:
        raise FitnefError(f"task.train.num_parallel_nefs={tr.num_parallel_nefs!r}: use auto or a positive integer") from None
    if chunk < 1:
        raise FitnefError(f"task.train.num_parallel_nefs={chunk}: must be >= 1")

    template = build_nef(cfg.nef, modality.in_features, modality.out_features)
    layout = ParamLayout.of(template)
    all_idx = np.arange(total)
    seed_of = np.asarray(seeds, dtype=np.int64)[all_idx // m]
    rows = {"labels": np.tile(np.asarray(labels), len(seeds)), "signal_idx": all_idx % m, "seed": seed_of}
    for name, per_signal in (modality.row_arrays() if hasattr(modality, "row_arrays") else {}).items():
        per_signal = np.asarray(per_signal)  # (M, ...) -> (K*M, ...), row i holds signal i % M's values
        rows[name] = np.tile(per_signal, (len(seeds),) + (1,) * (per_signal.ndim - 1))
    # every setting is checked before the store exists
    optimizer, schedule = build_optimization(cfg, int(tr.num_steps))
    resolve_compile(tr.compile, device, 0, quiet=True)
    per_call = micro_batch(tr.micro_batch, device)
    learned, ident = meta_start(cfg, modality, layout), identity(cfg)
    if learned is not None:  # the init's content, not its path, is what the NeFs depend on
        ident["task"]["train"]["meta_init_sha256"] = learned.sha256
    store = NefStore.create_or_open(
        cfg.task.nef_dir, identity=ident, num_rows=total, layout=layout, rows=rows,
        chunk_rows=chunk, modality=modality.attrs(),
        nef={**OmegaConf.to_container(cfg.nef, resolve=True),  # all build_model() needs
             "in_features": modality.in_features, "out_features": modality.out_features},
        metric=modality.metric_name, versions=versions())
    verify_signals(store, modality.signal_bytes, start, end, dataset_record(cfg))  # same data as fitted?
    store.update_attrs(run_attrs(cfg, sharding))  # dataset location, sharding: for inspect / status
    pending = store.pending(start, end)
    log.info("store %s: %d of [%d, %d) to fit", store.path, len(pending), start, end)

    fitter = ChunkFitter(template=copy.deepcopy(template).to(device), optimizer=optimizer, schedule=schedule,
                         num_steps=tr.num_steps, check_every=tr.check_every, target=modality.stop_target(tr),
                         compile=resolve_compile(tr.compile, device, len(pending) * int(tr.num_steps), layout.size),
                         micro_batch=per_call)
    logger = make_logger(cfg, modality, fitter.template)  # None unless logger=wandb
    fitter.on_step = logger.on_step if logger is not None else None
    results = {"metric": [], "fitted": 0, "write_s": 0.0}

    def make(rows: np.ndarray):
        if learned is None:
            params0 = init_stacked(template, seed_of[rows], rows, bool(tr.fixed_init), device)
        else:  # every NeF starts from the learned init
            params0 = {k: v.to(device).expand(len(rows), *v.shape).clone() for k, v in learned.items()}
        return params0, modality.problem(rows % m, seed_of[rows], rows, tr, device)

    finished = []  # (rows, flat params, metric, steps) fitted but not yet written

    def flush() -> None:
        """Write the finished rows in one locked write (a crash before it only costs a refit)."""
        if finished:
            rows, flat, metric, steps = (np.concatenate(x) for x in zip(*finished))
            order = np.argsort(rows)  # continuous batching finishes rows out of order
            t = time.perf_counter()
            store.write_rows(rows[order], flat[order], metric[order], steps[order])
            results["write_s"] += time.perf_counter() - t
            finished.clear()

    def emit(rows: np.ndarray, res) -> None:
        metric = res.metric.cpu().numpy()
        finished.append((rows, layout.flatten(res.params).cpu().numpy(), metric, res.steps.cpu().numpy()))
        if sum(len(f[0]) for f in finished) >= chunk:
            flush()
        results["metric"].append(metric)
        results["fitted"] += len(rows)
        bar.update(len(rows))
        if logger is not None:
            logger.rows(rows, metric)
        allm = np.concatenate(results["metric"])
        bar.set_postfix_str(f"{modality.metric_name} {allm.mean():.2f}")

    if auto_chunk and len(pending):
        chunk = choose_num_parallel(fitter, make, pending, device, per_call)
    bar = _progress(len(pending), enabled=bool(cfg.task.log.progress))  # after the logs above
    t0 = time.perf_counter()
    setup_s = t0 - t_setup
    train_s = 0.0
    try:
        if len(pending) and fitter.target is not None and tr.continuous:
            train_s = fitter.fit_stream(pending, make, chunk, emit)
        else:
            for rows in _chunks(pending, chunk):
                res = fitter.fit(*make(rows))
                train_s += res.train_s
                emit(rows, res)
    finally:  # also on Ctrl-C: rows already fitted are kept
        flush()
    bar.close()
    wall_s = time.perf_counter() - t0
    allm = np.concatenate(results["metric"]) if results["metric"] else np.zeros(0)
    fitted = results["fitted"]
    summary = FitSummary(fitted=fitted, total_done=int(store.done.sum()), total=total,
                         psnr_mean=float(allm.mean()) if fitted else math.nan,
                         psnr_std=float(allm.std()) if fitted else math.nan,
                         nefs_per_s=fitted / wall_s if wall_s else 0.0, train_s=train_s, wall_s=wall_s,
                         warmup_s=fitter.warmup_s, store=str(store.path), metric=modality.metric_name,
                         device=str(device), num_parallel_nefs=chunk, micro_batch=fitter.unit,
                         peak_mem_mb=peak_memory_mb(device), start_idx=start, end_idx=end,
                         setup_s=setup_s, write_s=results["write_s"],
                         shard=None if sharding is None else int(cfg.task.shard))
    if logger is not None:
        logger.finish(summary)
    return summary


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class MetaStart(dict):
    """A learned init (name -> tensor) and the hash of the file it came from."""

    sha256: str = ""


def meta_start(cfg: DictConfig, modality, layout: ParamLayout):
    """None for the default init; the checked meta init for ``task.train.init=meta``."""
    tr = cfg.task.train
    mode = tr.get("init", "default")
    if mode == "default":
        return None
    if mode != "meta":
        raise FitnefError(f"task.train.init={mode!r}: use default or meta")
    path = Path(tr.meta_init_path or Path(os.environ.get("NEF_PATH", "outputs/nefs")) / str(cfg.dataset.name)
                / str(cfg.nef.name) / "meta_init" / "init.pt")
    nef = {**OmegaConf.to_container(cfg.nef, resolve=True), "in_features": modality.in_features,
           "out_features": modality.out_features}
    start = MetaStart(load_init(path, nef, layout.names))
    start.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return start


# Work (NeFs x steps x parameters per NeF) from which compiling the step repays its compile time: the compile
# time over the time it saves per unit of work, measured with SIREN-8 (105 parameters; docs/performance.md).
# CPU (2-core EPYC): ~2.5 s / 3.5e-5 s per NeF-step = 7e4 NeF-steps = 7e6. CUDA (H200): ~8 s / 1.3e-7 s =
# 6e7 NeF-steps = 6e9, lowered to 3e9 since the wider NeFs save more per step than their parameter count says.
COMPILE_PAYS_AFTER = {"cpu": 1e7, "cuda": 3e9}


def resolve_compile(setting, device: torch.device, nef_steps: int, params_per_nef: int = 1,
                    quiet: bool = False) -> bool:
    """``task.train.compile``: true, false, or auto (compile when the run is long enough to repay it)."""
    if isinstance(setting, bool):
        return setting
    if str(setting) != "auto":
        raise FitnefError(f"task.train.compile={setting!r}: use true, false or auto")
    work, bar = nef_steps * params_per_nef, COMPILE_PAYS_AFTER.get(device.type, 0)
    chosen = work >= bar
    if not quiet:
        log.info("task.train.compile=auto: %s (%d NeF-steps x %d parameters %s %.0e on %s)",
                 "compiled" if chosen else "eager", nef_steps, params_per_nef, ">=" if chosen else "<", bar,
                 device.type)
    return chosen


def micro_batch(setting, device: torch.device):
    """NeFs per compiled call: ``auto`` caps it on CPUs (cache-sized chunks are fastest there)."""
    if setting in (None, "none", "null"):
        return None
    if setting == "auto":
        return "cache" if device.type == "cpu" else None  # see nefs.engine.cache_sized_batch
    try:
        value = int(setting)
    except (TypeError, ValueError):
        raise FitnefError(f"task.train.micro_batch={setting!r}: use auto, null or a positive integer") from None
    if value < 1:
        raise FitnefError(f"task.train.micro_batch={value}: must be >= 1")
    return value


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="NeF", disable=not enabled, dynamic_ncols=True)
