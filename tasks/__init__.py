"""Entry points (``python -m tasks.fit``) and the per-modality pieces (tasks/image, tasks/shape, ...)."""
