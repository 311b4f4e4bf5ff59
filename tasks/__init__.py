"""Entry points (``python -m tasks.fit``) and the per-modality pieces (tasks/image, tasks/shape, ...)."""
import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    # OpenMP threads that wait at a barrier sleep instead of spinning: libgomp reads its policy once, when
    # torch loads it, so it is set here, before any entry point imports torch. Spinning threads burn the cores
    # that a fit beside this one, or any busy process, needs; passive waiting measured 1.5-3x faster on a loaded
    # 2-core machine (docs/performance.md, scripts/omp_wait_bench.py). A policy the user set is kept.
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
