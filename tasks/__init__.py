"""Entry points (``python -m tasks.fit``) and the per-modality pieces (tasks/image, ...)."""
from . import schema  # noqa: F401  registers the structured configs with Hydra
from . import resolvers  # noqa: F401  registers ${fitnef.sweep_suffix:} (conf/task/*.yaml)
