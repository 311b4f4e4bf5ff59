"""Types of the ``task`` config: what every task shares (this module) and what a modality adds (its
own subclasses, named by the modality's ``task_schema``).

Defaults live in the YAML alone (conf/base/task.yaml, conf/task/<name>.yaml); these dataclasses only
say what each key is, so ``check_task`` can turn a bad type or an unknown key into one line before
anything is written (e.g. "task.train.num_steps: Value 'abc' of type 'str' could not be converted to
Integer"; "task.train.num_step: no such key; did you mean task.train.num_steps?").
"""
import difflib
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from nefs.errors import FitnefError


@dataclass
class TrainConfig:
    start_idx: int = MISSING
    end_idx: Optional[int] = MISSING
    num_parallel_nefs: Any = MISSING    # int, or auto (probe the device)
    num_steps: int = MISSING
    fixed_init: bool = MISSING
    target: Optional[float] = MISSING   # early stop on the task's metric
    check_every: int = MISSING
    compile: Any = MISSING              # true, false, or auto (when the run repays compiling)
    compile_mode: Optional[str] = None  # torch.compile's mode
    micro_batch: Any = MISSING          # auto, null or an int
    kernel: str = MISSING               # auto | fused | torch: the gradient's implementation (nefs/fused)
    matmul_precision: str = MISSING     # highest | high | medium: fp32 / tf32 / bf16 matmul inputs (nefs/precision.py)
    continuous: bool = MISSING
    checkpoint_every: Optional[int] = MISSING   # steps between saves of the NeFs in flight (tasks/preempt.py)
    init: str = MISSING                 # default | meta
    meta_init_path: Optional[str] = MISSING


@dataclass
class LogConfig:
    progress: bool = MISSING
    loss: int = MISSING
    metrics: int = MISSING


@dataclass
class TaskConfig:
    name: str = MISSING
    modality: str = MISSING             # module:Class of the modality (nefs.modality.Modality)
    seeds: List[int] = MISSING
    nef_dir: str = MISSING
    shard: Optional[int] = MISSING
    num_shards: int = MISSING
    train: TrainConfig = field(default_factory=TrainConfig)
    log: LogConfig = field(default_factory=LogConfig)


def _keys(schema, path: str) -> list:
    """Every dotted key a schema allows (for did-you-mean)."""
    out = []
    for f in fields(schema):
        t = f.type if is_dataclass(f.type) else None
        out += _keys(t, f"{path}.{f.name}") if t is not None else [f"{path}.{f.name}"]
    return out


def check_task(cfg: DictConfig, schema) -> None:
    """Refuse a task config that does not fit ``schema`` (a TaskConfig subclass) with one line."""
    try:
        values = OmegaConf.to_container(cfg.task, resolve=True)
        OmegaConf.merge(OmegaConf.structured(schema), values)
    except ConfigKeyError as e:
        key = f"task.{e.full_key}" if getattr(e, "full_key", None) else "task"
        close = difflib.get_close_matches(key, _keys(schema, "task"), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise FitnefError(f"{key}: no such key for task={cfg.task.get('name')}{hint}") from None
    except ValidationError as e:
        key = f"task.{e.full_key}" if getattr(e, "full_key", None) else "task"
        raise FitnefError(f"{key}: {str(e).splitlines()[0]}") from None
