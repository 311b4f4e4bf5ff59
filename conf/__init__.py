"""Hydra config groups (installed with the package so that `python -m tasks.fit` works from any directory)."""
