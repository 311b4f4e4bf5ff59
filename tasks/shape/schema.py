"""Types of task=shape's own keys (defaults: conf/task/shape.yaml)."""
from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from tasks.schema import TaskConfig, TrainConfig


@dataclass
class ShapeTrainConfig(TrainConfig):
    num_points: Any = MISSING       # per class per step: an integer, or [inside, outside]


@dataclass
class ShapeTaskConfig(TaskConfig):
    train: ShapeTrainConfig = field(default_factory=ShapeTrainConfig)
