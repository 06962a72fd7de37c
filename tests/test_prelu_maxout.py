"""PReLU and Maxout (fastnn.functional.prelu / prelu_backward / maxout / maxout_backward).

References are written here in NumPy: float64 for accuracy, and the same formula in the
input's dtype where the result must match bit for bit (one rounding per element).
Gradients are checked by central differences in float64 and against torch autograd.
"""

import re

import numpy as np
import pytest

import fastnn
from fastnn import functional as F

DTYPES = [np.float32, np.float64]


def dtype_id(dt):
    return np.dtype(dt).name


def raises_naming(exc_type, name, fn, *args, **kwargs):
    """fn(...) raises exc_type with a message naming `name` (as a word)."""
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", msg), (
        f"message {msg!r} does not name {name!r}")


def chan_shape(ndim, axis, C):
    """Shape that broadcasts a (C,) vector along the channel axis."""
    if axis == -1:
        return (1,) * (ndim - 1) + (C,)
    return (1, C) + (1,) * (ndim - 2)


def rng_data(shape, dtype, seed):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# =========================================================================== PReLU reference


def weight_view(weight, ndim, axis):
    if weight.shape[0] == 1:
        return weight.reshape((1,) * max(ndim, 1)) if ndim else weight.reshape(())
    return weight.reshape(chan_shape(ndim, axis, weight.shape[0]))


def ref_prelu(x, weight, axis):
    w = weight_view(weight, x.ndim, axis)
    return np.where(x > 0, x, w * x)  # in x's dtype: the kernel's one rounding


def ref_prelu_backward(dy, x, weight, axis):
    """dx in x's dtype (bitwise), dweight in float64 (summed over every other axis)."""
    w = weight_view(weight, x.ndim, axis)
    dx = np.where(x > 0, dy, w * dy)
    term = np.where(x > 0, 0.0, x.astype(np.float64) * dy.astype(np.float64))
    if weight.shape[0] == 1:
        dw = np.array([term.sum()])
    else:
        a = axis if axis >= 0 else x.ndim - 1
        dw = np.moveaxis(term, a, -1).reshape(-1, weight.shape[0]).sum(0)
    return dx, dw


# (shape, channel_axis, weight length: 'C' or 1)
PRELU_CASES = [
    ((4, 6, 5, 7), 1, "C"),
    ((5, 7, 6), -1, "C"),
    ((9, 6), 1, "C"),
    ((9, 6), -1, "C"),
    ((3, 5, 40000), 1, "C"),  # several column tiles per row
    ((3000, 37), -1, "C"),  # channels last, many row blocks
    ((2, 19, 3, 3), 1, "C"),  # inner 9 < 16: per-column weights
    ((4, 6, 5, 7), 1, 1),
    ((200001,), 1, 1),  # 1-D with one weight
    ((17,), -1, "C"),  # 1-D, channel axis -1
    ((), 1, 1),  # 0-d
]


def case_id(case):
    shape, axis, k = case
    return "x".join(map(str, shape)) + f"-ax{axis}-w{k}"


def make_prelu_case(case, dtype, seed=0):
    shape, axis, k = case
    x = rng_data(shape, dtype, seed)
    C = 1 if k == 1 else shape[axis]
    weight = np.random.default_rng(seed + 1).uniform(-1.5, 1.5, C).astype(dtype)
    dy = rng_data(shape, dtype, seed + 2)
    return x, weight, dy, axis


def dweight_tol(x, dy, dtype):
    """|error| bound of a float64 sum rounded once to dtype."""
    scale = float(np.abs(x.astype(np.float64) * dy.astype(np.float64)).sum()) + 1e-300
    return (1e-6 if dtype == np.float32 else 1e-13) * scale


@pytest.mark.parametrize("case", PRELU_CASES, ids=case_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_prelu_matches_reference(dtype, case):
    x, weight, dy, axis = make_prelu_case(case, dtype)
    x0, dy0 = x.copy(), dy.copy()
    y = F.prelu(x, weight, channel_axis=axis)
    assert y.dtype == dtype and y.shape == x.shape
    assert np.array_equal(y, ref_prelu(x, weight, axis))
    dx, dw = F.prelu_backward(dy, x, weight, channel_axis=axis)
    dx_ref, dw_ref = ref_prelu_backward(dy, x, weight, axis)
    assert np.array_equal(dx, dx_ref)
    assert dw.dtype == dtype and dw.shape == weight.shape
    assert np.all(np.abs(dw.astype(np.float64) - dw_ref) <= dweight_tol(x, dy, dtype))
    assert np.array_equal(x, x0) and np.array_equal(dy, dy0), "inputs modified"


def test_prelu_finite_differences():
    rng = np.random.default_rng(3)
    for shape, axis in (((3, 4, 5), 1), ((6, 4), -1)):
        x = rng.standard_normal(shape)
        x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
        weight = rng.uniform(-1, 1, 4)
        dy = rng.standard_normal(shape)
        dx, dw = F.prelu_backward(dy, x, weight, channel_axis=axis)
        loss = lambda xx, ww: float(np.sum(F.prelu(xx, ww, channel_axis=axis) * dy))
        h = 1e-6
        num_dx = np.zeros_like(x)
        for i in np.ndindex(shape):
            xp, xm = x.copy(), x.copy()
            xp[i] += h
            xm[i] -= h
            num_dx[i] = (loss(xp, weight) - loss(xm, weight)) / (2 * h)
        num_dw = np.array([(loss(x, weight + h * e) - loss(x, weight - h * e)) / (2 * h)
                           for e in np.eye(4)])
        assert np.allclose(dx, num_dx, rtol=1e-7, atol=1e-8)
        assert np.allclose(dw, num_dw, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", [((4, 6, 5, 7), 1, "C"), ((4, 5, 7, 6), -1, "C"),
                                  ((4, 6, 5), 1, 1), ((8, 6), 1, "C")], ids=case_id)
def test_prelu_matches_torch(dtype, case, torch):
    x, weight, dy, axis = make_prelu_case(case, dtype, seed=10)
    move = (lambda a: np.moveaxis(a, -1, 1)) if axis == -1 else (lambda a: a)
    xt = torch.tensor(np.ascontiguousarray(move(x)), requires_grad=True)
    wt = torch.tensor(weight, requires_grad=True)
    yt = torch.nn.functional.prelu(xt, wt)
    yt.backward(torch.tensor(np.ascontiguousarray(move(dy))))
    y = F.prelu(x, weight, channel_axis=axis)
    dx, dw = F.prelu_backward(dy, x, weight, channel_axis=axis)
    assert np.array_equal(move(y), yt.detach().numpy())
    assert np.array_equal(move(dx), xt.grad.numpy())
    tol = dweight_tol(x, dy, dtype) * 2
    assert np.all(np.abs(dw.astype(np.float64) - wt.grad.numpy().astype(np.float64)) <= tol)


def test_prelu_nan_and_signed_zero():
    x = np.array([np.nan, -0.0, 0.0, -2.0, 3.0, np.inf, -np.inf], np.float32)
    w = np.array([0.25], np.float32)
    y = F.prelu(x, w)
    assert np.isnan(y[0])
    assert np.array_equal(y[1:], [0.0, 0.0, -0.5, 3.0, np.inf, -np.inf])
    dy = np.ones_like(x)
    dx, dw = F.prelu_backward(dy, x, w)
    assert np.array_equal(dx, [0.25, 0.25, 0.25, 0.25, 1.0, 1.0, 0.25])  # x > 0 passes dy
    assert np.isnan(dw[0]), "a NaN x reaches the weight gradient"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_prelu_in_place(dtype):
    x, weight, dy, axis = make_prelu_case(((4, 6, 5, 7), 1, "C"), dtype, seed=20)
    y_ref = F.prelu(x, weight)
    dx_ref, dw_ref = F.prelu_backward(dy, x, weight)
    x2 = x.copy()
    assert F.prelu(x2, weight, out=x2) is x2 and np.array_equal(x2, y_ref)
    for alias in ("dy", "x"):
        x2, dy2 = x.copy(), dy.copy()
        target = dy2 if alias == "dy" else x2
        dx, dw = F.prelu_backward(dy2, x2, weight, out=target)
        assert dx is target and np.array_equal(dx, dx_ref) and np.array_equal(dw, dw_ref)
    dx, dw = np.full(x.shape, 7, dtype), np.full(6, 7, dtype)
    res = F.prelu_backward(dy, x, weight, out=(dx, dw))
    assert res[0] is dx and res[1] is dw and np.array_equal(dw, dw_ref)
    res = F.prelu_backward(dy, x, weight, out=(None, dw))
    assert res[1] is dw and np.array_equal(res[0], dx_ref)


DET_CASES = [((3, 5, 40000), 1, "C"), ((3000, 37), -1, "C"), ((2, 19, 3, 3), 1, "C"),
             ((300001,), 1, 1), ((16, 64, 9, 9), 1, "C")]


@pytest.mark.parametrize("case", DET_CASES, ids=case_id)
def test_prelu_bitwise_across_threads_and_simd(case, simd_levels, simd_level, num_threads):
    x, weight, dy, axis = make_prelu_case(case, np.float32, seed=30)
    ref = None
    for level in simd_levels:
        for n in (1, 2, 3):
            with simd_level(level), num_threads(n):
                got = (F.prelu(x, weight, channel_axis=axis),
                       *F.prelu_backward(dy, x, weight, channel_axis=axis))
            if ref is None:
                ref = got
            for name, a, b in zip(("y", "dx", "dweight"), got, ref):
                assert np.array_equal(a, b), f"{name} differs at {level}, {n} threads"


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_prelu_empty(dtype):
    x = np.zeros((0, 3, 4), dtype)
    w = np.ones(3, dtype)
    assert F.prelu(x, w).shape == (0, 3, 4)
    dx, dw = F.prelu_backward(x, x, w)
    assert dx.shape == x.shape and np.array_equal(dw, np.zeros(3, dtype))


def test_prelu_errors_write_nothing():
    x = rng_data((4, 6, 5), np.float32, 40)
    w = np.full(6, 0.5, np.float32)
    out = np.full(x.shape, 7, np.float32)
    ro = out.copy()
    ro.flags.writeable = False
    cases = [
        (TypeError, "x", (x.astype(np.int32), w), {}),
        (TypeError, "x", (x.tolist(), w), {}),
        (TypeError, "weight", (x, w.astype(np.float64)), {}),
        (ValueError, "weight", (x, np.full(5, 0.5, np.float32)), {}),
        (ValueError, "weight", (x, np.full(4, 0.5, np.float32)), {"channel_axis": -1}),
        (ValueError, "weight", (x, np.full((6, 1), 0.5, np.float32)), {}),
        (ValueError, "weight", (x, np.zeros(0, np.float32)), {}),
        (ValueError, "channel_axis", (x, w), {"channel_axis": 0}),
        (ValueError, "x", (x[:, :, ::2], w), {}),  # non-contiguous
        (ValueError, "x", (x[0, 0], w), {}),  # 1-D x has no axis 1 for a (C,) weight
        (ValueError, "out", (x, w), {"out": np.zeros((4, 6, 4), np.float32)}),
        (ValueError, "out", (x, w), {"out": ro}),
        (TypeError, "out", (x, w), {"out": out.astype(np.float64)}),
    ]
    for exc, name, args, kwargs in cases:
        x0, out0 = x.copy(), out.copy()
        raises_naming(exc, name, F.prelu, *args, **kwargs)
        assert np.array_equal(x, x0) and np.array_equal(out, out0), "written before the checks passed"
    # out overlapping x by all but one element (only out=x exactly is allowed)
    buf = np.zeros(x.size + 1, np.float32)
    xs, outs = buf[:-1].reshape(x.shape), buf[1:].reshape(x.shape)
    xs[...] = x
    before = buf.copy()
    raises_naming(ValueError, "out", F.prelu, xs, w, out=outs)
    assert np.array_equal(buf, before)


def test_prelu_backward_errors_write_nothing():
    x = rng_data((4, 6, 5), np.float32, 41)
    dy = rng_data((4, 6, 5), np.float32, 42)
    w = np.full(6, 0.5, np.float32)
    dx = np.full(x.shape, 7, np.float32)
    dw = np.full(6, 7, np.float32)
    cases = [
        (ValueError, "dy", (dy[:, :5], x, w), {}),
        (TypeError, "dy", (dy.astype(np.float64), x, w), {}),
        (ValueError, "weight", (dy, x, np.full(7, 0.5, np.float32)), {}),
        (ValueError, "dweight", (dy, x, w), {"out": (dx, np.full(5, 7, np.float32))}),
        (ValueError, "dx", (dy, x, w), {"out": (dx[:3], dw)}),
        (ValueError, "dx", (dy, x, w), {"out": (dx, dx.reshape(-1)[:6])}),  # dweight inside dx
        (ValueError, "dweight", (dy, x, w), {"out": (dx, w)}),  # dweight is the weight
        (ValueError, "out", (dy, x, w), {"out": (dx, dw, dw)}),
    ]
    for exc, name, args, kwargs in cases:
        dx0, dw0 = dx.copy(), dw.copy()
        raises_naming(exc, name, F.prelu_backward, *args, **kwargs)
        assert np.array_equal(dx, dx0) and np.array_equal(dw, dw0), "written before the checks passed"


# =========================================================================== Maxout reference


def ref_maxout(x, pieces, axis):
    """(y, winner one-hot) in x's dtype; np.argmax picks the first NaN, else the first maximum."""
    a = axis if axis >= 0 else x.ndim - 1
    C = x.shape[a]
    g = x.reshape(x.shape[:a] + (C // pieces, pieces) + x.shape[a + 1:])
    y = np.max(g, axis=a + 1)
    win = np.argmax(g, axis=a + 1)
    onehot = np.expand_dims(win, a + 1) == np.arange(pieces).reshape((-1,) + (1,) * (x.ndim - a - 1))
    return y, onehot.reshape(x.shape)


def ref_maxout_backward(dy, x, pieces, axis):
    a = axis if axis >= 0 else x.ndim - 1
    _, onehot = ref_maxout(x, pieces, axis)
    dy_rep = np.repeat(dy, pieces, axis=a)
    return np.where(onehot, dy_rep, 0).astype(x.dtype)


MAXOUT_CASES = [
    ((4, 6, 5, 7), 1, 2),
    ((4, 6, 5, 7), 1, 3),
    ((4, 6, 5, 7), 1, 6),
    ((4, 6, 5, 7), 1, 1),
    ((4, 5, 7, 6), -1, 2),
    ((4, 5, 7, 12), -1, 4),
    ((9, 8), 1, 4),  # inner 1: gathered 16 groups at a time, then a scalar tail
    ((5, 8, 3, 3), 1, 2),  # inner 9 < 16: gathered
    ((37, 6, 5), 1, 3),  # inner 5, 74 groups: gathered blocks and a tail
    ((9, 8), -1, 2),
    ((2, 4, 40000), 1, 2),  # several inner tiles
    ((16,), -1, 4),
]


def mcase_id(case):
    shape, axis, p = case
    return "x".join(map(str, shape)) + f"-ax{axis}-p{p}"


@pytest.mark.parametrize("case", MAXOUT_CASES, ids=mcase_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_maxout_matches_reference(dtype, case):
    shape, axis, p = case
    x = rng_data(shape, dtype, 50)
    x0 = x.copy()
    y = F.maxout(x, p, channel_axis=axis)
    y_ref, _ = ref_maxout(x, p, axis)
    assert y.dtype == dtype and y.shape == y_ref.shape
    assert np.array_equal(y, y_ref)
    dy = rng_data(y.shape, dtype, 51)
    dx = F.maxout_backward(dy, x, p, channel_axis=axis)
    assert dx.shape == x.shape and np.array_equal(dx, ref_maxout_backward(dy, x, p, axis))
    assert np.array_equal(x, x0)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("axis", [1, -1])
def test_maxout_ties_go_to_the_first_index_and_nan_wins(dtype, axis):
    rng = np.random.default_rng(52)
    shape = (3, 12, 40) if axis == 1 else (3, 40, 12)
    x = rng.integers(-2, 3, shape).astype(dtype)  # many ties
    a = 1 if axis == 1 else 2
    idx = [0, 0, 0]
    for k, pos in enumerate((5, 17, 33)):  # NaNs at various pieces of some groups
        idx = [k, pos % 12, pos] if axis == 1 else [k, pos, pos % 12]
        x[tuple(idx)] = np.nan
    x[(0, 0, 1) if axis == 1 else (0, 1, 0)] = -0.0
    for p in (2, 3, 4):
        y = F.maxout(x, p, channel_axis=axis)
        y_ref, _ = ref_maxout(x, p, axis)
        assert np.array_equal(y, y_ref, equal_nan=True)
        assert np.isnan(y).sum() == 3, "each group with a NaN gives NaN"
        dy = rng.standard_normal(y.shape).astype(dtype)
        dx = F.maxout_backward(dy, x, p, channel_axis=axis)
        assert np.array_equal(dx, ref_maxout_backward(dy, x, p, axis))
        # exactly one winner per group
        nz = np.add.reduceat(dx != 0, np.arange(0, 12, p), axis=a)
        assert np.all(nz <= 1)
    # signed zeros tie: the first piece wins, its value is the output
    z = np.array([[-0.0, 0.0], [0.0, -0.0]], dtype)
    y = F.maxout(z, 2)
    assert np.signbit(y[0, 0]) and not np.signbit(y[1, 0])
    dx = F.maxout_backward(np.ones((2, 1), dtype), z, 2)
    assert np.array_equal(dx, [[1, 0], [1, 0]])


def test_maxout_finite_differences():
    rng = np.random.default_rng(53)
    shape, p = (2, 6, 5), 3
    x = rng.permutation(np.arange(np.prod(shape))).reshape(shape) * 0.1  # distinct values
    dy = rng.standard_normal((2, 2, 5))
    dx = F.maxout_backward(dy, x, p)
    h = 1e-6
    num = np.zeros_like(x)
    for i in np.ndindex(shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = (np.sum(F.maxout(xp, p) * dy) - np.sum(F.maxout(xm, p) * dy)) / (2 * h)
    assert np.allclose(dx, num, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("case", [((4, 6, 5, 7), 1, 3), ((4, 5, 7, 6), -1, 2)], ids=mcase_id)
def test_maxout_matches_torch(dtype, case, torch):
    shape, axis, p = case
    x = rng_data(shape, dtype, 54)
    a = 1 if axis == 1 else len(shape) - 1
    xt = torch.tensor(x, requires_grad=True)
    gshape = shape[:a] + (shape[a] // p, p) + shape[a + 1:]
    yt = xt.reshape(gshape).max(dim=a + 1).values
    dy = rng_data(tuple(yt.shape), dtype, 55)
    yt.backward(torch.tensor(dy))
    assert np.array_equal(F.maxout(x, p, channel_axis=axis), yt.detach().numpy())
    assert np.array_equal(F.maxout_backward(dy, x, p, channel_axis=axis), xt.grad.numpy())


@pytest.mark.parametrize("case", [((2, 4, 40000), 1, 2), ((3000, 12), -1, 3), ((8, 16, 9, 9), 1, 4),
                                  ((999, 6, 7), 1, 2)],
                         ids=mcase_id)
def test_maxout_bitwise_across_threads_and_simd(case, simd_levels, simd_level, num_threads):
    shape, axis, p = case
    x = rng_data(shape, np.float32, 56)
    y0 = F.maxout(x, p, channel_axis=axis)
    dy = rng_data(y0.shape, np.float32, 57)
    ref = (y0, F.maxout_backward(dy, x, p, channel_axis=axis))
    for level in simd_levels:
        for n in (1, 2, 3):
            with simd_level(level), num_threads(n):
                got = (F.maxout(x, p, channel_axis=axis), F.maxout_backward(dy, x, p, channel_axis=axis))
            assert np.array_equal(got[0], ref[0]) and np.array_equal(got[1], ref[1]), (level, n)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_maxout_out_and_in_place(dtype):
    x = rng_data((4, 6, 5), dtype, 58)
    y_ref = F.maxout(x, 2)
    dy = rng_data(y_ref.shape, dtype, 59)
    dx_ref = F.maxout_backward(dy, x, 2)
    y = np.full(y_ref.shape, 7, dtype)
    assert F.maxout(x, 2, out=y) is y and np.array_equal(y, y_ref)
    x2 = x.copy()
    assert F.maxout_backward(dy, x2, 2, out=x2) is x2 and np.array_equal(x2, dx_ref)
    dx = np.full(x.shape, 7, dtype)
    assert F.maxout_backward(dy, x, 2, out=dx) is dx and np.array_equal(dx, dx_ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_maxout_empty(dtype):
    for shape, axis in (((0, 4, 3), 1), ((2, 0, 3), 1), ((2, 3, 0), -1)):
        x = np.zeros(shape, dtype)
        y = F.maxout(x, 2 if shape[axis] else 3, channel_axis=axis)
        expect = list(shape)
        expect[axis] //= 2 if shape[axis] else 3
        assert y.shape == tuple(expect)
        assert F.maxout_backward(y, x, 2 if shape[axis] else 3, channel_axis=axis).shape == shape


def test_maxout_errors_write_nothing():
    x = rng_data((4, 6, 5), np.float32, 60)
    dy = rng_data((4, 3, 5), np.float32, 61)
    y = np.full((4, 3, 5), 7, np.float32)
    dx = np.full(x.shape, 7, np.float32)
    ro = y.copy()
    ro.flags.writeable = False
    fwd_cases = [
        (ValueError, "pieces", (x, 4), {}),
        (ValueError, "pieces", (x, 0), {}),
        (ValueError, "pieces", (x, -2), {}),
        (TypeError, "pieces", (x, 2.0), {}),
        (TypeError, "pieces", (x, True), {}),
        (ValueError, "pieces", (x, 2), {"channel_axis": -1}),  # 5 channels last
        (ValueError, "channel_axis", (x, 2), {"channel_axis": 2}),
        (TypeError, "x", (x.astype(np.int64), 2), {}),
        (ValueError, "x", (x[:, :, ::2], 2), {}),
        (ValueError, "x", (x[0, 0], 1), {}),  # 1-D has no axis 1
        (ValueError, "out", (x, 2), {"out": np.full((4, 6, 5), 7, np.float32)}),
        (ValueError, "out", (x, 2), {"out": ro}),
        (TypeError, "out", (x, 2), {"out": y.astype(np.float64)}),
        (ValueError, "out", (x, 1), {"out": x}),  # same shape, but x is still being read
    ]
    for exc, name, args, kwargs in fwd_cases:
        x0, y0 = x.copy(), y.copy()
        raises_naming(exc, name, F.maxout, *args, **kwargs)
        assert np.array_equal(x, x0) and np.array_equal(y, y0)
    bwd_cases = [
        (ValueError, "dy", (dy[:, :2], x, 2), {}),
        (ValueError, "dy", (dy, x, 3), {}),
        (TypeError, "dy", (dy.astype(np.float64), x, 2), {}),
        (ValueError, "pieces", (dy, x, 4), {}),
        (ValueError, "out", (dy, x, 2), {"out": dx[:, :3]}),
    ]
    for exc, name, args, kwargs in bwd_cases:
        x0, dx0 = x.copy(), dx.copy()
        raises_naming(exc, name, F.maxout_backward, *args, **kwargs)
        assert np.array_equal(x, x0) and np.array_equal(dx, dx0)
    # dx over dy: the only overlap check with a real alias
    buf = np.zeros(x.size, np.float32)
    dyv = buf[:60].reshape(dy.shape)
    dyv[...] = dy
    before = buf.copy()
    raises_naming(ValueError, "out", F.maxout_backward, dyv, x, 2, out=buf.reshape(x.shape))
    assert np.array_equal(buf, before)
