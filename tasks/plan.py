"""Plan a fit: every setting checked and every execution choice resolved once, before a store exists.

``plan_run(cfg)`` returns a frozen ``RunPlan``: the modality and its signals, the NeF template, the index
scheme (NeF i = seed ``seeds[i // M]``, signal ``i % M``) and this process's range (a shard cut once, at the
store's chunk boundaries), the rows of it still pending, the optimizer and schedule, the start (default or
meta init), the identity a store must have, and the typed execution settings (device, chunk — probed on the
device when ``num_parallel_nefs=auto`` —, micro-batch, compile, kernel, precision). A bad value anywhere is
one ``FitnefError`` line here, so nothing has been written when it is raised. Later steps read the plan and
never change it.
"""
import copy
import dataclasses
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from nefs.engine import ChunkFitter
from nefs.errors import FitnefError
from nefs.meta import load_init
from nefs.modality import load as load_modality_class
from nefs.precision import MatmulPrecision, resolve_matmul_precision
from nefs.probe import choose_num_parallel
from nefs.slots import MicroBatch
from nefs.stack import ParamLayout, init_stacked
from nefs.step_cache import default_cache_file
from nefs.step_choice import Kernel, resolve_kernel
from nefs.store import NefStore

from .identity import identity
from .runs import shard_device, shard_range
from .schema import check_task

log = logging.getLogger(__name__)


# -- single settings -----------------------------------------------------------------------------------
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


# Work (NeFs x steps x parameters per NeF) from which compiling the step repays its compile time: the compile
# time over the time it saves per unit of work, measured with SIREN-8 (105 parameters; docs/performance.md).
# CPU (2-core EPYC): ~2.5 s / 3.5e-5 s per NeF-step = 7e4 NeF-steps = 7e6. CUDA (H200): ~8 s / 1.3e-7 s =
# 6e7 NeF-steps = 6e9, lowered to 3e9 since the wider NeFs save more per step than their parameter count says.
COMPILE_PAYS_AFTER = {"cpu": 1e7, "cuda": 3e9}


def resolve_compile(setting, device: torch.device, nef_steps: int, params_per_nef: int = 1) -> bool:
    """``task.train.compile``: true, false, or auto (compile when the run is long enough to repay it)."""
    if isinstance(setting, bool):
        return setting
    if str(setting) != "auto":
        raise FitnefError(f"task.train.compile={setting!r}: use true, false or auto")
    work, bar = nef_steps * params_per_nef, COMPILE_PAYS_AFTER.get(device.type, 0)
    chosen = work >= bar
    log.info("task.train.compile=auto: %s (%d NeF-steps x %d parameters %s %.0e on %s)",
             "compiled" if chosen else "eager", nef_steps, params_per_nef, ">=" if chosen else "<", bar, device.type)
    return chosen


def micro_batch(setting, device: torch.device) -> Union[None, int, MicroBatch]:
    """NeFs per compiled call: ``auto`` caps it on CPUs (cache-sized chunks are fastest there)."""
    if setting in (None, "none", "null"):
        return None
    if setting == "auto":
        return MicroBatch.CACHE if device.type == "cpu" else None  # see nefs.slots.cache_sized_batch
    return positive_int("task.train.micro_batch", setting, "auto, null or a positive integer")


def compile_mode(setting) -> Optional[str]:
    """``task.train.compile_mode``: torch.compile's mode (null: its default; reduce-overhead: CUDA graphs)."""
    modes = (None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
    if setting not in modes:
        raise FitnefError(f"task.train.compile_mode={setting!r}: use null or one of {', '.join(modes[1:])}")
    return setting


def chunk_setting(value) -> Optional[int]:
    """``task.train.num_parallel_nefs``: a positive integer, or None for auto (probed later)."""
    if str(value) == "auto":
        return None
    return positive_int("task.train.num_parallel_nefs", value, "auto or a positive integer")


def positive_int(key: str, value, allowed: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise FitnefError(f"{key}={value!r}: use {allowed}") from None
    if number < 1:
        raise FitnefError(f"{key}={number}: must be >= 1")
    return number


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


def load_modality(cfg: DictConfig):
    """(modality, labels) of the configured task and dataset; the task config is checked against the
    modality's schema first."""
    cls = load_modality_class(cfg.task.modality)
    check_task(cfg, cls.task_schema)
    data = instantiate(cfg.dataset).load()
    return cls.from_data(data, cfg.task), data.labels


# -- the plan ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Execution:
    """How the run executes (none of it enters a store's identity but matmul_precision, which changes the
    NeFs slightly)."""

    device: torch.device
    chunk: int                     # NeFs per chunk / slots (num_parallel_nefs, probed when auto)
    micro_batch: Union[None, int, MicroBatch]   # NeFs per compiled call: the whole chunk, cache-sized, or at most n
    compile: bool
    kernel: Kernel                 # auto | fused | torch: chosen among by nefs/step_choice.py
    continuous: bool               # continuous batching (with an early-stop target)
    matmul_precision: MatmulPrecision = MatmulPrecision.HIGHEST   # the step's matmul inputs (nefs/precision.py)
    compile_mode: Optional[str] = None  # torch.compile's mode
    step_cache: Optional[Path] = None   # where kernel=auto remembers its measured choices


@dataclass(frozen=True)
class RunPlan:
    cfg: DictConfig
    modality: object
    labels: np.ndarray
    template: torch.nn.Module      # on the CPU: init_stacked draws into it
    layout: ParamLayout
    seeds: list
    span: tuple                    # [start_idx, end_idx) of the config, before sharding
    start: int                     # this process's range [start, end) of [0, total), cut at the store's chunks
    end: int
    total: int
    sharding: Optional[dict]
    optimizer: Callable
    schedule: Callable
    learned: Optional[MetaStart]   # the meta init, or None
    identity: dict
    pending: np.ndarray            # rows of [start, end) not yet done in the store when planned
    execution: Execution
    nef_record: dict = field(default_factory=dict)

    @property
    def signals(self) -> int:
        return len(self.modality)

    @property
    def seed_of(self) -> np.ndarray:
        return np.asarray(self.seeds, dtype=np.int64)[np.arange(self.total) // self.signals]

    def rows(self) -> dict:
        """Per-row arrays of the store: labels, signal_idx, seed, and the modality's own (tiled over seeds)."""
        m, k = self.signals, len(self.seeds)
        all_idx = np.arange(self.total)
        out = {"labels": np.tile(np.asarray(self.labels), k), "signal_idx": all_idx % m, "seed": self.seed_of}
        for name, per_signal in self.modality.row_arrays().items():
            per_signal = np.asarray(per_signal)  # (M, ...) -> (K*M, ...), row i holds signal i % M's values
            out[name] = np.tile(per_signal, (k,) + (1,) * (per_signal.ndim - 1))
        return out

    @property
    def start_end(self) -> tuple:
        return self.start, self.end

    def cut_at(self, chunk_rows: int) -> "RunPlan":
        """This plan with its shard cut at ``chunk_rows`` boundaries (so shards own their chunk files): a new
        plan, for the one case where the store was created, by a shard started beside this one, with other
        chunks than planned."""
        start, end, sharding = shard_range(self.cfg.task, *self.span, chunk_rows)
        pending = (self.pending if (start, end) == self.start_end   # the same range: already read
                   else NefStore.peek_pending(self.cfg.task.nef_dir, start, end))
        return dataclasses.replace(self, start=start, end=end, sharding=sharding, pending=pending)

    def make(self, rows: np.ndarray):
        """(initial params, problem) of NeF rows ``rows`` on the plan's device."""
        device, tr = self.execution.device, self.cfg.task.train
        seed_of = self.seed_of
        if self.learned is None:
            params0 = init_stacked(self.template, seed_of[rows], rows, bool(tr.fixed_init), device)
        else:  # every NeF starts from the learned init
            params0 = {k: v.to(device).expand(len(rows), *v.shape).clone() for k, v in self.learned.items()}
        return params0, self.modality.problem(rows % self.signals, seed_of[rows], rows, tr, device)


def build_engine(plan: RunPlan) -> ChunkFitter:
    """The engine the plan describes (its step chosen on first use, nefs/step_choice.py)."""
    tr, ex = plan.cfg.task.train, plan.execution
    return ChunkFitter(template=copy.deepcopy(plan.template).to(ex.device), optimizer=plan.optimizer,
                       schedule=plan.schedule, num_steps=tr.num_steps, check_every=tr.check_every,
                       target=tr.target, metric=plan.modality.metric, compile=ex.compile,
                       micro_batch=ex.micro_batch, kernel=ex.kernel, matmul_precision=ex.matmul_precision,
                       compile_mode=ex.compile_mode, step_cache=ex.step_cache)


def plan_run(cfg: DictConfig) -> RunPlan:
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
    span = (start, end)   # the whole range; this process's shard of it is cut below, at the store's chunks
    device = shard_device(device, cfg.device, cfg.task.get("shard"))
    chunk = chunk_setting(tr.num_parallel_nefs)
    if tr.get("checkpoint_every") is not None:   # null: no periodic saves (signals still save)
        positive_int("task.train.checkpoint_every", tr.checkpoint_every, "null or a positive integer")
    template = build_nef(cfg.nef, modality.in_features, modality.out_features)
    layout = ParamLayout.of(template)
    optimizer, schedule = build_optimization(cfg, int(tr.num_steps))
    learned, ident = meta_start(cfg, modality, layout), identity(cfg)
    if learned is not None:  # the init's content, not its path, is what the NeFs depend on
        ident["task"]["train"]["meta_init_sha256"] = learned.sha256
    # this shard's work before its range is cut at chunk boundaries: what compiling and probing are sized by
    lo, hi = shard_range(cfg.task, *span)[:2]
    rough = NefStore.peek_pending(cfg.task.nef_dir, lo, hi)
    execution = Execution(device=device, chunk=chunk or 0, micro_batch=micro_batch(tr.micro_batch, device),
                          compile=resolve_compile(tr.compile, device, len(rough) * int(tr.num_steps), layout.size),
                          kernel=resolve_kernel(tr.kernel, template, device), continuous=bool(tr.continuous),
                          matmul_precision=resolve_matmul_precision(tr.matmul_precision),
                          compile_mode=compile_mode(tr.get("compile_mode")), step_cache=default_cache_file())
    nef_record = {**OmegaConf.to_container(cfg.nef, resolve=True),  # all build_model() needs
                  "in_features": modality.in_features, "out_features": modality.out_features}
    draft = RunPlan(cfg=cfg, modality=modality, labels=np.asarray(labels), template=template, layout=layout,
                    seeds=seeds, span=span, start=lo, end=hi, total=total, sharding=None,
                    optimizer=optimizer, schedule=schedule, learned=learned, identity=ident, pending=rough,
                    execution=execution, nef_record=nef_record)
    if chunk is None:   # num_parallel_nefs=auto: probed with the engine's own step, before the store exists
        # uncompiled: the probe times eager steps at sizes the run never uses, so a torch.compile there (one per
        # kernel=auto measurement) would be thrown away; the run's engine measures its own shape, compiled too
        prober = build_engine(dataclasses.replace(draft, execution=dataclasses.replace(execution, compile=False)))
        chunk = choose_num_parallel(prober, draft.make, rough, device, execution.micro_batch) if len(rough) else 256
        draft = dataclasses.replace(draft, execution=dataclasses.replace(execution, chunk=chunk))
    # shards own whole chunk files: cut at the existing store's chunks, or at the chunks it will be created with
    return draft.cut_at(NefStore.peek_chunk_rows(cfg.task.nef_dir) or chunk)
