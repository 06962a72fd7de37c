"""Dropout (the backward also with the mask regenerated): the registry's cases
(fastnn/bench/registry.py), grouped per case."""

import pytest

from fastnn.bench import pytest_params


@pytest.mark.parametrize("case,impl", pytest_params("dropout"))
def test_dropout(run_case, case, impl):
    run_case(case, impl)
