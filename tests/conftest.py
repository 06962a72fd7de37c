"""Shared fixtures for the fastnn test suite.

Fixtures
--------
simd_levels   list of SIMD levels this build and CPU can run (``fastnn.info()["simd_available"]``).
simd_level    factory of context managers: ``with simd_level("avx2"): ...`` selects a SIMD level
              via ``fastnn._cpu.set_simd_level`` and restores the previous one on exit.
num_threads   factory of context managers: ``with num_threads(2): ...`` sets the thread count via
              ``fastnn.set_num_threads`` and restores the previous one on exit.
torch         the ``torch`` module; skips the test when torch is missing, unless the environment
              variable FASTNN_REQUIRE_TORCH=1 is set (CI), in which case the test fails.

stream_threshold  factory of context managers: ``with stream_threshold(0): ...`` makes every
              elementwise pass stream its output past the cache (big arrays do by default).
An autouse fixture also restores the SIMD level, thread count and stream threshold after every test, so that a
test that fails half-way can't leak its settings into the next one.
"""

import contextlib
import os

import pytest


def _fastnn_or_none():
    try:
        import fastnn
    except ImportError:
        return None
    return fastnn


@contextlib.contextmanager
def _setting(get, set_, value):
    """Runs the block with a process-wide setting at value, then restores it."""
    old = get()
    set_(value)
    try:
        yield value
    finally:
        set_(old)


def _simd_level_cm(name):
    import fastnn

    return _setting(fastnn._cpu.get_simd_level, fastnn._cpu.set_simd_level, name)


def _num_threads_cm(n):
    import fastnn

    return _setting(fastnn.get_num_threads, fastnn.set_num_threads, n)


def _stream_threshold_cm(nbytes):
    import fastnn

    return _setting(fastnn._cpu.stream_threshold, fastnn._cpu.set_stream_threshold, nbytes)


@pytest.fixture(autouse=True)
def _restore_global_settings():
    fastnn = _fastnn_or_none()
    if fastnn is None:  # the test itself reports the import failure
        yield
        return
    simd = fastnn._cpu.get_simd_level()
    threads = fastnn.get_num_threads()
    stream = fastnn._cpu.stream_threshold()
    yield
    if fastnn._cpu.stream_threshold() != stream:
        fastnn._cpu.set_stream_threshold(stream)
    if fastnn._cpu.get_simd_level() != simd:
        fastnn._cpu.set_simd_level(simd)
    if fastnn.get_num_threads() != threads:
        fastnn.set_num_threads(threads)


@pytest.fixture(scope="session")
def simd_levels():
    import fastnn

    return list(fastnn.info()["simd_available"])


@pytest.fixture
def simd_level():
    """``with simd_level(name):`` runs the block on SIMD level ``name``."""
    return _simd_level_cm


@pytest.fixture
def num_threads():
    """``with num_threads(n):`` runs the block with ``n`` threads."""
    return _num_threads_cm


@pytest.fixture
def stream_threshold():
    """``with stream_threshold(nbytes):`` streams the outputs of passes over more bytes."""
    return _stream_threshold_cm


@pytest.fixture
def torch():
    if os.environ.get("FASTNN_REQUIRE_TORCH") == "1":
        try:
            import torch as _torch
        except ImportError as exc:  # CI must exercise the torch comparisons
            pytest.fail(f"FASTNN_REQUIRE_TORCH=1 but torch cannot be imported: {exc}")
        return _torch
    return pytest.importorskip("torch")
