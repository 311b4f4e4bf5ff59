"""Types of task=audio's own keys (defaults: conf/task/audio.yaml): a recording trains like an image
(``masked_portion``), and logs no pictures."""
from dataclasses import dataclass, field

from tasks.image.schema import ImageTrainConfig
from tasks.schema import TaskConfig


@dataclass
class AudioTaskConfig(TaskConfig):
    train: ImageTrainConfig = field(default_factory=ImageTrainConfig)
