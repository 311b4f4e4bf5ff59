"""The one exception type for bad user input.

Entry points catch it and print its message as a single line (no traceback): it must name the bad
value and what is allowed.
"""
import sys
from contextlib import contextmanager

from omegaconf.errors import MissingMandatoryValue


class FitnefError(Exception):
    pass


class Preempted(Exception):
    """A fit stopped by a preemption signal (or Ctrl-C) once its state was saved; the same command resumes it."""

    exit_code = 75   # EX_TEMPFAIL (sysexits.h): a temporary failure, try again

    def __init__(self, message: str, interrupted: bool = False):
        super().__init__(message)
        self.interrupted = interrupted   # Ctrl-C: exit 130 (128 + SIGINT), as an interrupted command does
        if interrupted:
            self.exit_code = 130


@contextmanager
def reported_as_one_line():
    """For entry points: a FitnefError inside becomes ``error: <message>`` on stderr, exit status 2."""
    try:
        yield
    except FitnefError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Preempted as e:
        print(f"{'interrupted' if e.interrupted else 'preempted'}: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C: finished rows were flushed on the way out, the rest is refitted
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        sys.exit(130)
    except MissingMandatoryValue as e:  # a `???` in the config that the command line did not fill
        key = getattr(e, "full_key", None) or "a value"
        print(f"error: {key} has no value; give it on the command line, e.g. {key}=...", file=sys.stderr)
        sys.exit(2)
