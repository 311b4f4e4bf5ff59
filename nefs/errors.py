"""The one exception type for bad user input.

Entry points catch it and print its message as a single line (no traceback): it must name the bad
value and what is allowed.
"""


class FitnefError(Exception):
    pass
