"""The spatial kernels on CuPy arrays (marker ``cuda``; skipped without CuPy and a GPU):
the CUDA module gives the CPU kernels' bits (the bias gradient: to rounding), and
Conv2d, MaxPool2d and AvgPool2d run on the GPU with the CPU's results."""

import numpy as np
import pytest

import fastnn
from _gpu import require_cuda
from fastnn import nn

pytestmark = pytest.mark.cuda
cp = require_cuda()  # the whole module needs CuPy and a GPU
CPU = fastnn._cpu


def gpu():
    return fastnn._backend.cuda_module()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [(3, 1, 1, 1), ((3, 2), (2, 1), (0, 2), (2, 1)), (2, 2, 0, 1)])
def test_window_kernels_give_the_cpu_bits(dtype, geometry):
    rng = np.random.default_rng(3)
    kernel, stride, padding, dilation = geometry
    x = rng.standard_normal((3, 4, 11, 10)).astype(dtype)
    cols = CPU.im2col(x, kernel, stride, padding, dilation, None)
    np.testing.assert_array_equal(cp.asnumpy(gpu().im2col(cp.asarray(x), kernel, stride, padding, dilation, None)),
                                  cols)
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    np.testing.assert_array_equal(
        cp.asnumpy(gpu().col2im(cp.asarray(dcols), x.shape, kernel, stride, padding, dilation, None)),
        CPU.col2im(dcols, x.shape, kernel, stride, padding, dilation, None))
    dy = rng.standard_normal((3, 5, 6, 7)).astype(dtype)
    product = rng.standard_normal((5, 3 * 42)).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype)
    np.testing.assert_array_equal(
        cp.asnumpy(gpu().bias_output(cp.asarray(product), cp.asarray(bias), dy.shape, None)),
        CPU.bias_output(product, bias, dy.shape, None))
    dproduct, dbias = gpu().bias_output_backward(cp.asarray(dy), None, None)
    cpu_dproduct, cpu_dbias = CPU.bias_output_backward(dy, None, None)
    np.testing.assert_array_equal(cp.asnumpy(dproduct), cpu_dproduct)
    np.testing.assert_allclose(cp.asnumpy(dbias), cpu_dbias, rtol=1e-6 if dtype == np.float32 else 1e-13)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("geometry", [(2, 2, 0), (3, 1, 1), ((3, 2), (2, 1), (1, 0)), (17, 1, 0)])
def test_pooling_kernels_give_the_cpu_bits(dtype, geometry):
    rng = np.random.default_rng(4)
    kernel, stride, padding = geometry
    x = rng.integers(-3, 3, (2, 3, 19, 18)).astype(dtype)
    x[0, 0, 2, 3] = x[1, 2, 5, 5] = np.nan
    y, index = gpu().max_pool2d(cp.asarray(x), kernel, stride, padding, None, None)
    cpu_y, cpu_index = CPU.max_pool2d(x, kernel, stride, padding, None, None)
    np.testing.assert_array_equal(cp.asnumpy(y), cpu_y)
    np.testing.assert_array_equal(cp.asnumpy(index), cpu_index)
    dy = rng.standard_normal(cpu_y.shape).astype(dtype)
    np.testing.assert_array_equal(
        cp.asnumpy(gpu().max_pool2d_backward(cp.asarray(dy), index, x.shape, kernel, stride, padding, None)),
        CPU.max_pool2d_backward(dy, cpu_index, x.shape, kernel, stride, padding, None))
    np.testing.assert_array_equal(cp.asnumpy(gpu().avg_pool2d(cp.asarray(x), kernel, stride, padding, None)),
                                  CPU.avg_pool2d(x, kernel, stride, padding, None))
    np.testing.assert_array_equal(
        cp.asnumpy(gpu().avg_pool2d_backward(cp.asarray(dy), x.shape, kernel, stride, padding, None)),
        CPU.avg_pool2d_backward(dy, x.shape, kernel, stride, padding, None))


def test_layers_on_the_gpu_match_the_cpu():
    rng = np.random.default_rng(5)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1), nn.Conv2d(4, 2, 2, stride=2),
                          nn.AvgPool2d(2))
    x = rng.standard_normal((2, 3, 16, 16)).astype(np.float32)
    y = model(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = model.backward(dy)
    grads = [p.grad.copy() for p in model.parameters()]
    model.zero_grad()
    model.to("cuda")
    gy = model(cp.asarray(x))
    assert isinstance(gy, cp.ndarray)
    gdx = model.backward(cp.asarray(dy))
    np.testing.assert_allclose(cp.asnumpy(gy), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cp.asnumpy(gdx), dx, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads, model.parameters()):
        np.testing.assert_allclose(cp.asnumpy(p.grad), g, rtol=1e-4, atol=1e-4)


def test_gpu_refuses_bad_input_before_launching():
    x = cp.zeros((2, 3, 6, 5), cp.float32)
    with pytest.raises(ValueError, match="padding should be at most half"):
        gpu().max_pool2d(x, 2, 2, 2, None, None)
    with pytest.raises(TypeError, match="must live on the same device"):
        gpu().im2col(np.zeros((2, 3, 6, 5), np.float32), 3, 1, 1, 1, cp.zeros((27, 60), cp.float32))
