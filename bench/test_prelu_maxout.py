"""PReLU and Maxout: the registry's cases (fastnn/bench/registry.py), grouped per case."""

import pytest

from fastnn.bench import pytest_params


@pytest.mark.parametrize("case,impl", pytest_params("prelu_maxout"))
def test_prelu_maxout(run_case, case, impl):
    run_case(case, impl)
