"""Structured configs: types for the task group, so a bad override fails early with Hydra's
readable message (e.g. "Value 'abc' of type 'str' could not be converted to Integer").

What every modality shares lives in the base classes; each task adds its own keys and defaults.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TrainConfig:
    start_idx: int = 0
    end_idx: Optional[int] = None
    num_parallel_nefs: Any = "auto"     # int, or auto (probe the device)
    num_steps: int = 500
    fixed_init: bool = True
    check_every: int = 10
    multi_gpu: bool = False
    compile: Any = "auto"             # true, false, or auto (when the run repays compiling)
    micro_batch: Optional[str] = "auto"
    kernel: str = "auto"               # auto | fused | torch: the gradient's implementation (nefs/fused)
    continuous: bool = True
    init: str = "default"              # default | meta (a learned init, see tasks/find_init.py)
    meta_init_path: Optional[str] = None


@dataclass
class ImageTrainConfig(TrainConfig):
    masked_portion: float = 1.0
    target_psnr: Optional[float] = None


@dataclass
class ShapeTrainConfig(TrainConfig):
    num_parallel_nefs: Any = 64
    num_steps: int = 1000
    fixed_init: bool = False
    num_points: Any = 2048          # per class per step: an integer, or [inside, outside]
    target_iou: Optional[float] = None


@dataclass
class LogConfig:
    progress: bool = True
    loss: int = 10
    metrics: int = 10
    use_wandb: bool = False


@dataclass
class ImageLogConfig(LogConfig):
    images: int = 500


@dataclass
class ShapeLogConfig(LogConfig):
    meshes: int = 2500


@dataclass
class WandbConfig:
    entity: Optional[str] = None
    project: str = "fitnef"
    name: Optional[str] = None


@dataclass
class TaskConfig:
    name: str = MISSING
    seeds: List[int] = field(default_factory=lambda: [0])
    nef_dir: str = MISSING
    shard: Optional[int] = None     # this process's part of [start_idx, end_idx) (tasks/runs.py)
    num_shards: int = 1
    wandb: WandbConfig = field(default_factory=WandbConfig)


@dataclass
class ImageTaskConfig(TaskConfig):
    name: str = "image"
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)
    log: ImageLogConfig = field(default_factory=ImageLogConfig)


@dataclass
class ShapeTaskConfig(TaskConfig):
    name: str = "shape"
    train: ShapeTrainConfig = field(default_factory=ShapeTrainConfig)
    log: ShapeLogConfig = field(default_factory=ShapeLogConfig)


def register() -> None:
    ConfigStore.instance().store(group="task", name="image_schema", node=ImageTaskConfig)
    ConfigStore.instance().store(group="task", name="shape_schema", node=ShapeTaskConfig)


register()
