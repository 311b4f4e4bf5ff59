"""Types of task=image's own keys (defaults: conf/task/image.yaml)."""
from dataclasses import dataclass, field
from typing import List, Optional

from omegaconf import MISSING

from tasks.schema import LogConfig, TaskConfig, TrainConfig


@dataclass
class ImageTrainConfig(TrainConfig):
    masked_portion: float = MISSING


@dataclass
class ImageLogConfig(LogConfig):
    images: int = MISSING


@dataclass
class PixelsConfig:
    mean: List[float] = MISSING   # per channel, on [0, 1]
    std: List[float] = MISSING


@dataclass
class ImageTaskConfig(TaskConfig):
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)
    log: ImageLogConfig = field(default_factory=ImageLogConfig)
    # Absent unless a recipe sets it (conf/experiment/), so stores fitted before it keep their identity:
    # the NeF fits (pixel - mean) / std with these instead of the dataset's own statistics.
    pixels: Optional[PixelsConfig] = None
