"""Argument rules the Python layer shares (the native ones live in the op layer)."""

import numpy as np


def check_bool(value, name):
    """value as a bool: a bool or numpy.bool_; anything else (a str, an int, None) is a
    TypeError naming the argument. Every flag of the Python API goes through here."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)
