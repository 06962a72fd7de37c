"""Benchmarks run on request: pytest bench/ --benchmark-only (never part of the test run).

The cases are fastnn.bench.families', the ones `fastnn bench` times; each group is one
case, with fastnn (default call and out=), NumPy, PyTorch, the extras and the memory
floor side by side. BENCH_SIZES (default 1M,64M) sets the sizes, BENCH_THREADS the
thread count for fastnn and PyTorch (default: all cores)."""

import gc
import os
import time

import pytest

import fastnn
from fastnn.bench import runner

THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
ROUNDS, BUDGET_S = 25, 2.0  # at most; a slow implementation gets fewer rounds (at least 1)
TORCH = runner.import_torch()
_built = {}  # the last case built: its implementations run one after another


@pytest.fixture(scope="session", autouse=True)
def _threads():
    fastnn.set_num_threads(THREADS)
    if TORCH is not None:
        TORCH.set_num_threads(THREADS)


@pytest.fixture
def run_case(benchmark):
    def run(case, impl):
        if impl.startswith("torch") and TORCH is None:
            pytest.skip("torch is not installed")
        if case not in _built:
            _built.clear()
            gc.collect()
            _built[case] = case.build(TORCH)
        fn = _built[case].impls[impl]
        benchmark.group = f"{case.name} {case.dtype}"
        t0 = time.perf_counter()
        fn()  # warm-up, and how many rounds fit the budget
        rounds = max(1, min(ROUNDS, int(BUDGET_S / (time.perf_counter() - t0))))
        benchmark.pedantic(fn, rounds=rounds, warmup_rounds=0)
    return run
