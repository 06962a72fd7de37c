"""Seeds for fastnn's counter-based random numbers (``fastnn.random``).

Dropout masks come from Philox4x32-10 keyed by a 64-bit ``seed`` at a 64-bit
``offset`` (the mask rule in docs/design.md): the mask of a call depends only on
(seed, offset, element index), never on threads, SIMD level or device. A
:class:`Generator` holds (seed, offset) and hands each call a fresh offset, moving on
by ``ceil(n / 4)`` (the Philox blocks an n-element call uses), so no two calls share
a counter.

The global generator behind ``dropout(..., seed=None)`` is seeded from
``os.urandom`` at import, like ``numpy.random.default_rng()``: masks differ between
runs unless you call :func:`seed` (alias :func:`manual_seed`).
"""

import numbers
import os
import threading

import numpy as np

__all__ = ["Generator", "default_generator", "seed", "manual_seed", "initial_seed", "fresh_seed"]

_U64_MAX = 2**64 - 1


def check_u64(value, name):
    """value as an int in [0, 2**64 - 1]: TypeError for non-integers, ValueError out of range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int in [0, 2**64 - 1], got {type(value).__name__}")
    value = int(value)
    if not 0 <= value <= _U64_MAX:
        raise ValueError(f"{name} must be in [0, 2**64 - 1], got {value}")
    return value


def _random_seed():
    return int.from_bytes(os.urandom(8), "little")


class Generator:
    """(seed, offset) for counter-based random numbers; thread-safe.

    ``Generator(seed=None)``: seed is an int in [0, 2**64 - 1], or None for one from
    ``os.urandom``. Each :meth:`draw` returns the (seed, offset) for one call and
    moves the offset past it, so calls never reuse a Philox counter.
    """

    def __init__(self, seed=None):
        self._lock = threading.Lock()
        self._seed = _random_seed() if seed is None else check_u64(seed, "seed")
        self._offset = 0

    @property
    def seed(self):
        return self._seed

    @property
    def offset(self):
        """The offset the next draw returns."""
        return self._offset

    def manual_seed(self, seed):
        """Restart at (seed, offset 0). Returns self."""
        seed = check_u64(seed, "seed")
        with self._lock:
            self._seed, self._offset = seed, 0
        return self

    def draw(self, n):
        """(seed, offset) for a call over n elements; the next draw starts ceil(n / 4) later."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral):
            raise TypeError(f"n must be an int, got {type(n).__name__}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        with self._lock:
            seed, offset = self._seed, self._offset
            end = offset + (int(n) + 3) // 4
            if end > _U64_MAX:
                raise OverflowError(
                    f"Generator offset would pass 2**64 - 1 (at {offset}, drawing {n} "
                    "elements); reseed it")
            self._offset = end
        return seed, offset

    def get_state(self):
        """(seed, offset), for checkpoints."""
        with self._lock:
            return self._seed, self._offset

    def set_state(self, state):
        """Restore a state from get_state()."""
        seed, offset = state
        seed, offset = check_u64(seed, "seed"), check_u64(offset, "offset")
        with self._lock:
            self._seed, self._offset = seed, offset

    def __getstate__(self):  # copy.deepcopy / pickle: the state, not the lock
        return self.get_state()

    def __setstate__(self, state):
        self._lock = threading.Lock()
        self._seed, self._offset = state

    def __repr__(self):
        return f"Generator(seed={self._seed}, offset={self._offset})"


default_generator = Generator()


def seed(s):
    """Seed the global generator (offset back to 0): later masks are reproducible."""
    default_generator.manual_seed(s)


manual_seed = seed


def initial_seed():
    """The global generator's seed."""
    return default_generator.seed


def fresh_seed():
    """A new 64-bit seed derived from the global generator, which moves on: what is
    seeded from it (layer initialization, a Dropout layer's generator) is reproducible
    after :func:`seed` and differs from call to call."""
    seed_, offset = default_generator.draw(4)
    return int(np.random.SeedSequence([seed_, offset]).generate_state(1, np.uint64)[0])
