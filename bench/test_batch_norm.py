"""Batch norm, with and without the fused ReLU: the registry's cases
(fastnn/bench/registry.py), grouped per case."""

import pytest

from fastnn.bench import pytest_params


@pytest.mark.parametrize("case,impl", pytest_params("batch_norm"))
def test_batch_norm(run_case, case, impl):
    run_case(case, impl)
