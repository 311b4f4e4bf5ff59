"""Types of task=image's own keys (defaults: conf/task/image.yaml)."""
from dataclasses import dataclass, field

from omegaconf import MISSING

from tasks.schema import LogConfig, TaskConfig, TrainConfig


@dataclass
class ImageTrainConfig(TrainConfig):
    masked_portion: float = MISSING


@dataclass
class ImageLogConfig(LogConfig):
    images: int = MISSING


@dataclass
class ImageTaskConfig(TaskConfig):
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)
    log: ImageLogConfig = field(default_factory=ImageLogConfig)
