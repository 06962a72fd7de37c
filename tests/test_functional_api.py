"""The functional API's conveniences: a Parameter is taken wherever an array is, and
batch_norm_forward(momentum=None, num_batches_tracked=...) is torch's cumulative average."""

import numpy as np
import pytest

import fastnn
from fastnn import F
from fastnn.nn import Parameter


def test_parameters_are_taken_as_arrays():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 3, 4))
    w, b = Parameter(rng.uniform(0.5, 2, 3)), Parameter(rng.standard_normal(3))
    ref = F.batch_norm_forward(x, w.data, b.data, None, None)
    got = F.batch_norm_forward(Parameter(x.copy()), w, b, None, None)
    assert all(np.array_equal(r, g) for r, g in zip(ref, got))
    dy = rng.standard_normal(x.shape)
    dx, dw, db = F.batch_norm_backward(dy, x, w, ref.mean, ref.invstd)
    assert np.array_equal(dw, F.batch_norm_backward(dy, x, w.data, ref.mean, ref.invstd)[1])
    slope = Parameter(np.array([0.2]))
    assert np.array_equal(F.prelu(x, slope), F.prelu(x, slope.data))
    # out= with a Parameter, alone and inside a tuple
    out = Parameter(np.empty_like(x))
    assert F.relu(x, out=out) is out.data and np.array_equal(out.data, np.maximum(x, 0))
    dxp, dwp = Parameter(np.empty_like(x)), Parameter(np.empty(1))
    F.prelu_backward(dy, x, slope, out=(dxp, dwp))
    np.testing.assert_array_equal(dwp.data, F.prelu_backward(dy, x, slope.data)[1])
    assert np.array_equal(F.softmax(Parameter(x)), F.softmax(x))


def test_the_wrapped_functions_keep_their_names_and_docs():
    assert F.relu.__name__ == "relu" and "max(x, 0)" in F.relu.__doc__
    assert F.batch_norm_forward.__wrapped__.__name__ == "batch_norm_forward"


def cumulative_reference(batches):
    """torch's BatchNorm(momentum=None): running = mean over batches of each batch's
    statistics (unbiased variance), counted from the initial (0, 1)."""
    mean, var = np.zeros(batches[0].shape[1]), np.ones(batches[0].shape[1])
    for n, x in enumerate(batches, start=1):
        mean += (x.mean(0) - mean) / n
        var += (x.var(0, ddof=1) - var) / n
    return mean, var


def test_momentum_none_is_the_cumulative_average(torch):
    rng = np.random.default_rng(1)
    batches = [3 + rng.standard_normal((10, 4)) * (i + 1) for i in range(6)]
    rm, rv, count = np.zeros(4), np.ones(4), np.zeros((), np.int64)
    layer = torch.nn.BatchNorm1d(4, momentum=None, affine=False).double()
    for x in batches:
        F.batch_norm_forward(x, None, None, rm, rv, momentum=None, num_batches_tracked=count)
        layer(torch.tensor(x))
    assert count == 6 and count.shape == ()
    mean, var = cumulative_reference(batches)
    np.testing.assert_allclose(rm, mean, rtol=1e-13)
    np.testing.assert_allclose(rv, var, rtol=1e-13)
    np.testing.assert_allclose(rm, layer.running_mean.numpy(), rtol=1e-13)
    np.testing.assert_allclose(rv, layer.running_var.numpy(), rtol=1e-13)


def test_count_is_incremented_with_a_float_momentum_too():
    rm, rv, count = np.zeros(2), np.ones(2), np.array(5, np.int64)
    F.batch_norm_forward(np.arange(8.0).reshape(4, 2), None, None, rm, rv, num_batches_tracked=count)
    assert count == 6
    np.testing.assert_allclose(rm, 0.1 * np.array([3.0, 4.0]))
    # eval, or no running statistics: nothing to count, momentum=None needs no count
    F.batch_norm_forward(np.ones((4, 2)), None, None, rm, rv, training=False, momentum=None,
                         num_batches_tracked=count)
    F.batch_norm_forward(np.arange(8.0).reshape(4, 2), None, None, None, None, momentum=None,
                         num_batches_tracked=count)
    assert count == 6


def test_momentum_none_errors_move_nothing():
    x = np.arange(8.0).reshape(4, 2)
    rm, rv = np.zeros(2), np.ones(2)
    with pytest.raises(ValueError, match="momentum=None .* needs num_batches_tracked"):
        F.batch_norm_forward(x, None, None, rm, rv, momentum=None)
    with pytest.raises(TypeError, match="num_batches_tracked must have dtype int64"):
        F.batch_norm_forward(x, None, None, rm, rv, momentum=None, num_batches_tracked=np.array(1, np.int32))
    with pytest.raises(ValueError, match=r"num_batches_tracked must have shape \(\)"):
        F.batch_norm_forward(x, None, None, rm, rv, momentum=None, num_batches_tracked=np.zeros(1, np.int64))
    with pytest.raises(TypeError, match="num_batches_tracked must be a 0-d int64 array"):
        F.batch_norm_forward(x, None, None, rm, rv, momentum=None, num_batches_tracked=3)
    count = np.array(2, np.int64)
    with pytest.raises(ValueError, match="one value per channel|more than 1 value"):  # refused by the kernel
        F.batch_norm_forward(x[:1], None, None, rm, rv, momentum=None, num_batches_tracked=count)
    assert count == 2 and (rm == 0).all() and (rv == 1).all()
    assert fastnn.nn.BatchNorm1d(2, momentum=None).momentum is None
