"""Every case of fastnn.bench's families (the ones `fastnn bench` times), one
pytest-benchmark group per case: select with -k, e.g. `-k "gelu and 64M"`."""

import pytest

from fastnn.bench import pytest_params


@pytest.mark.parametrize("case,impl", pytest_params())
def test_case(run_case, case, impl):
    run_case(case, impl)
