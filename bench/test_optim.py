"""Optimizer steps (one array and 200 of mixed sizes; PyTorch fused and foreach): the
registry's cases (fastnn/bench/registry.py), grouped per case."""

import pytest

from fastnn.bench import pytest_params


@pytest.mark.parametrize("case,impl", pytest_params("optim"))
def test_optim(run_case, case, impl):
    run_case(case, impl)
