"""Activations and softmax cross-entropy: the registry's cases
(fastnn/bench/registry.py), grouped per case."""

import pytest

from fastnn.bench import pytest_params


@pytest.mark.parametrize("case,impl", pytest_params("activations", "softmax_cross_entropy"))
def test_activations(run_case, case, impl):
    run_case(case, impl)
