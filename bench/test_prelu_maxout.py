"""PReLU and Maxout: fastnn vs NumPy vs PyTorch CPU vs the memory floor, float32.

Each group (op, elements) holds:
  fastnn       the default call (a fresh result)
  fastnn_out   the same call writing into out=
  numpy        what a user writes in NumPy
  torch        what autograd runs (aten's prelu kernels; maxout as reshape + max, its
               backward the scatter autograd does with the saved indices)
  floor        native streaming loops over the same traffic:
               prelu forward    x read, y written              (copy)
               prelu backward   x, dy read, dx written         (a + b)
               maxout forward   x read, x / pieces written     (a + b over x's two halves)
               maxout backward  x, dy read, dx written         (copy of x, then a read of dy)
x is (N, 64, H, W) channels first, weight (64,), pieces = 2.
"""

import numpy as np
import pytest

import fastnn

SHAPES = {"1M": (16, 64, 32, 32), "64M": (64, 64, 128, 128)}
IMPLS = ["fastnn", "fastnn_out", "numpy", "torch", "floor"]
PIECES = 2


class Case:
    def __init__(self, shape):
        rng = np.random.default_rng(0)
        self.shape = shape
        self.x = rng.standard_normal(shape, dtype=np.float32)
        self.weight = rng.uniform(0.1, 0.3, shape[1]).astype(np.float32)
        self.out = np.empty_like(self.x)
        self.small = (shape[0], shape[1] // PIECES) + shape[2:]
        self.dy = rng.standard_normal(shape, dtype=np.float32)
        self.dy_small = rng.standard_normal(self.small, dtype=np.float32)
        self.out_small = np.empty(self.small, np.float32)
        self.dweight = np.empty_like(self.weight)


def fastnn_call(case, op, use_out):
    F = fastnn.F
    if op == "prelu_forward":
        out = case.out if use_out else None
        return lambda: F.prelu(case.x, case.weight, out=out)
    if op == "prelu_backward":
        out = (case.out, case.dweight) if use_out else None
        return lambda: F.prelu_backward(case.dy, case.x, case.weight, out=out)
    if op == "maxout_forward":
        out = case.out_small if use_out else None
        return lambda: F.maxout(case.x, PIECES, out=out)
    out = case.out if use_out else None
    return lambda: F.maxout_backward(case.dy_small, case.x, PIECES, out=out)


def grouped(a):
    n, c = a.shape[:2]
    return a.reshape((n, c // PIECES, PIECES) + a.shape[2:])


def numpy_call(case, op):
    x, dy, w = case.x, case.dy, case.weight.reshape(-1, 1, 1)
    if op == "prelu_forward":
        return lambda: np.where(x > 0, x, w * x)
    if op == "prelu_backward":
        def backward():
            pos = x > 0
            return np.where(pos, dy, w * dy), np.where(pos, 0, x * dy).sum(axis=(0, 2, 3))
        return backward
    if op == "maxout_forward":
        return lambda: grouped(x).max(axis=2)

    def maxout_backward():
        g = grouped(x)
        dx = np.zeros_like(g)
        np.put_along_axis(dx, g.argmax(axis=2)[:, :, None], case.dy_small[:, :, None], axis=2)
        return dx.reshape(x.shape)
    return maxout_backward


def torch_call(case, op):
    torch = pytest.importorskip("torch")
    x, dy, w = torch.from_numpy(case.x), torch.from_numpy(case.dy), torch.from_numpy(case.weight)
    if op == "prelu_forward":
        return lambda: torch.nn.functional.prelu(x, w)
    if op == "prelu_backward":
        wv = w.view(-1, 1, 1)

        def backward():
            dx, dw = torch.ops.aten._prelu_kernel_backward(dy, x, wv)
            return dx, dw.sum(dim=(0, 2, 3))
        return backward
    if op == "maxout_forward":
        return lambda: grouped(x).amax(dim=2)
    index = grouped(x).max(dim=2).indices.unsqueeze(2)
    g = torch.from_numpy(case.dy_small).unsqueeze(2)
    return lambda: torch.zeros(grouped(x).shape).scatter_(2, index, g).view(x.shape)


def floor_call(case, op):
    cpu = fastnn._cpu
    if op == "prelu_forward":
        return lambda: cpu.stream_copy(case.x, case.out)
    if op == "prelu_backward":
        return lambda: cpu.stream_add(case.x, case.dy, case.out)
    if op == "maxout_forward":
        halves = case.x.reshape(2, -1)
        return lambda: cpu.stream_add(halves[0], halves[1], case.out_small.reshape(-1))

    def maxout_backward():
        cpu.stream_copy(case.x, case.out)
        return cpu.stream_read(case.dy_small)
    return maxout_backward


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", list(SHAPES))
@pytest.mark.parametrize("op", ["prelu_forward", "prelu_backward", "maxout_forward", "maxout_backward"])
def test_prelu_maxout(benchmark, op, size, impl):
    case = Case(SHAPES[size])
    benchmark.group = f"{op} {size} float32"
    if impl in ("fastnn", "fastnn_out"):
        fn = fastnn_call(case, op, impl == "fastnn_out")
    elif impl == "numpy":
        fn = numpy_call(case, op)
    elif impl == "torch":
        fn = torch_call(case, op)
    else:
        fn = floor_call(case, op)
    big = case.x.size > 4_000_000
    benchmark.pedantic(fn, rounds=7 if big else 25, warmup_rounds=1 if big else 2)
