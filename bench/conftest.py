"""Benchmarks run on request: pytest bench/ --benchmark-only (never part of the test run).

BENCH_THREADS sets the thread count for fastnn and PyTorch (default: all cores)."""

import os

import pytest

import fastnn

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))


@pytest.fixture(scope="session", autouse=True)
def _threads():
    fastnn.set_num_threads(THREADS)
    try:
        import torch

        torch.set_num_threads(THREADS)
    except ImportError:
        pass
