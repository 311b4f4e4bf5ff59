"""fit-a-nef's entry point, kept so its command lines run unchanged:

    DATA_PATH=./data/ python tasks/image/fit.py --task=config/image.py:fit --nef=config/nef.py:SIREN ...

The flags are translated by ``tasks/legacy.py``, which prints the native command
(``python -m tasks.fit task=image ...``) and runs it. ``--dry-run`` only prints it.
"""
import os
import sys

if __name__ == "__main__":
    _here = os.path.dirname(os.path.realpath(__file__))
    # Run as a script, Python puts this folder first on sys.path, where datasets.py/fit.py would
    # shadow top-level modules; the repository root goes there instead.
    sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _here]
    sys.path.insert(0, os.path.dirname(os.path.dirname(_here)))

    from tasks.legacy import main

    main(default_task="image")
