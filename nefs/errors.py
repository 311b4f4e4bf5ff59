"""The one exception type for bad user input.

Entry points catch it and print its message as a single line (no traceback): it must name the bad
value and what is allowed.
"""
import sys
from contextlib import contextmanager


class FitnefError(Exception):
    pass


@contextmanager
def reported_as_one_line():
    """For entry points: a FitnefError inside becomes ``error: <message>`` on stderr, exit status 2."""
    try:
        yield
    except FitnefError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
