"""The spatial kernels (im2col, col2im, the conv output with its bias, max and average
pooling, forward and backward) against float64 references written here with plain
loops and NumPy slicing; bitwise the same for 1 and 2 threads; every bad argument
refused before anything is written; and the layers built on them (Conv2d, MaxPool2d,
AvgPool2d) by finite differences and against torch."""

import itertools

import numpy as np
import pytest

import fastnn
from fastnn import nn

K = fastnn._cpu
DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}

# (x shape, kernel, stride, padding, dilation)
CONV_CASES = [
    ((2, 3, 7, 6), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 9, 8), (3, 2), (2, 1), (0, 2), (1, 1)),
    ((3, 1, 10, 7), (2, 3), (1, 2), (2, 1), (2, 2)),
    ((2, 4, 5, 5), (1, 1), (2, 2), (0, 0), (1, 1)),
    ((1, 3, 6, 9), (5, 4), (3, 2), (2, 3), (1, 2)),
]
# (x shape, kernel, stride, padding): overlapping windows, padding, odd shapes
POOL_CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0)),
    ((2, 3, 9, 7), (3, 3), (2, 2), (1, 1)),
    ((1, 2, 7, 9), (3, 2), (1, 2), (1, 0)),
    ((2, 2, 6, 5), (3, 3), (1, 1), (0, 1)),
    ((1, 3, 40, 37), (4, 5), (3, 1), (2, 2)),
]


def out_size(size, k, s, p, d=1):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


# ------------------------------------------------------------------ references (float64)

def ref_im2col(x, kernel, stride, padding, dilation):
    """Plain loops: cols[(c, i, j), (n, p, q)] = x[n, c, p*sh - ph + i*dh, q*sw - pw + j*dw] or 0."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    cols = np.zeros((c * kh * kw, n * oh * ow))
    for ci, i, j, b, p, q in itertools.product(range(c), range(kh), range(kw), range(n), range(oh), range(ow)):
        ih, iw = p * sh - ph + i * dh, q * sw - pw + j * dw
        if 0 <= ih < h and 0 <= iw < w:
            cols[(ci * kh + i) * kw + j, (b * oh + p) * ow + q] = x[b, ci, ih, iw]
    return cols


def ref_col2im(cols, shape, kernel, stride, padding, dilation):
    """Padded accumulation by NumPy slices, one kernel offset at a time, then unpadded."""
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    oh, ow = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    blocks = cols.astype(np.float64).reshape(c, kh, kw, n, oh, ow)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw] += \
                blocks[:, i, j].transpose(1, 0, 2, 3)
    return padded[:, :, ph:ph + h, pw:pw + w]


def ref_max_pool(x, kernel, stride, padding):
    """Loops over each window's elements inside x: the first maximum, or the first NaN."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    y, index = np.empty((n, c, oh, ow)), np.empty((n, c, oh, ow), np.int64)
    for b, ci, p, q in itertools.product(range(n), range(c), range(oh), range(ow)):
        best, best_k = None, None
        for i, j in itertools.product(range(kh), range(kw)):
            ih, iw = p * sh - ph + i, q * sw - pw + j
            if not (0 <= ih < h and 0 <= iw < w):
                continue
            v = float(x[b, ci, ih, iw])
            if best is None or (not np.isnan(best) and (np.isnan(v) or v > best)):
                best, best_k = v, i * kw + j
        y[b, ci, p, q], index[b, ci, p, q] = best, best_k
    return y, index


def ref_max_pool_backward(dy, index, shape, kernel, stride, padding):
    dx = np.zeros(shape)
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for b, ci, p, q in itertools.product(*map(range, dy.shape)):
        k = index[b, ci, p, q]
        dx[b, ci, p * sh - ph + k // kw, q * sw - pw + k % kw] += dy[b, ci, p, q]
    return dx


def ref_avg_pool(x, kernel, stride, padding):
    """Zero-padded windows read by NumPy slices, divided by kh*kw (padding counts)."""
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = out_size(h, kh, sh, ph), out_size(w, kw, sw, pw)
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    padded[:, :, ph:ph + h, pw:pw + w] = x
    y = np.zeros((n, c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            y += padded[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
    return y / (kh * kw)


def ref_avg_pool_backward(dy, shape, kernel, stride, padding):
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    dx = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for b, ci, p, q in itertools.product(*map(range, dy.shape)):
        dx[b, ci, p * sh:p * sh + kh, q * sw:q * sw + kw] += dy[b, ci, p, q] / (kh * kw)
    return dx[:, :, ph:ph + h, pw:pw + w]


@pytest.fixture
def rng():
    return np.random.default_rng(11)


def close(actual, expected, dtype):
    assert actual.dtype == dtype
    np.testing.assert_allclose(actual, expected, rtol=TOL[dtype], atol=TOL[dtype])


# ------------------------------------------------------------------ im2col, col2im

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES)
def test_im2col_and_col2im_match_references(rng, dtype, case):
    shape, kernel, stride, padding, dilation = case
    x = rng.standard_normal(shape).astype(dtype)
    cols = K.im2col(x, kernel, stride, padding, dilation, None)
    np.testing.assert_array_equal(cols, ref_im2col(x.astype(np.float64), kernel, stride, padding, dilation))
    dcols = rng.standard_normal(cols.shape).astype(dtype)
    dx = K.col2im(dcols, shape, kernel, stride, padding, dilation, None)
    close(dx, ref_col2im(dcols, shape, kernel, stride, padding, dilation), dtype)
    # adjoint: <im2col(x), dcols> == <x, col2im(dcols)>
    lhs = np.sum(cols.astype(np.float64) * dcols)
    rhs = np.sum(x.astype(np.float64) * dx)
    assert abs(lhs - rhs) <= 1e-4 * max(1.0, abs(lhs)) if dtype == np.float32 else abs(lhs - rhs) <= 1e-10


def test_im2col_writes_into_out_and_accepts_int_hyper_parameters(rng):
    x = rng.standard_normal((2, 3, 6, 5))
    out = np.full((27, 2 * 6 * 5), np.nan)
    assert K.im2col(x, 3, 1, 1, 1, out) is out
    np.testing.assert_array_equal(out, ref_im2col(x, (3, 3), (1, 1), (1, 1), (1, 1)))
    dx = np.full(x.shape, np.nan)
    assert K.col2im(out, x.shape, [3, 3], 1, (1, 1), 1, dx) is dx
    np.testing.assert_allclose(dx, ref_col2im(out, x.shape, (3, 3), (1, 1), (1, 1), (1, 1)), rtol=1e-12)


def test_empty_batch():
    x = np.zeros((0, 3, 5, 5), np.float32)
    assert K.im2col(x, 3, 1, 0, 1, None).shape == (27, 0)
    assert K.col2im(np.zeros((27, 0), np.float32), x.shape, 3, 1, 0, 1, None).shape == x.shape
    y, index = K.max_pool2d(x, 2, 2, 0, None, None)
    assert y.shape == index.shape == (0, 3, 2, 2)


# ------------------------------------------------------------------ conv output and its bias

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
def test_bias_output_and_backward(rng, dtype, bias):
    n, o, oh, ow = 3, 5, 4, 7
    product = rng.standard_normal((o, n * oh * ow)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if bias else None
    y = K.bias_output(product, b, (n, o, oh, ow), None)
    expected = product.astype(np.float64).reshape(o, n, oh, ow).transpose(1, 0, 2, 3)
    if bias:
        expected = expected + b.astype(np.float64)[None, :, None, None]
    close(y, expected, dtype)
    if not bias:  # a copy, bit for bit
        np.testing.assert_array_equal(y, expected.astype(dtype))
    dy = rng.standard_normal((n, o, oh, ow)).astype(dtype) * 100
    dproduct, dbias = K.bias_output_backward(dy, None, None)
    np.testing.assert_array_equal(dproduct, dy.transpose(1, 0, 2, 3).reshape(o, -1))
    sums = np.array([sum(float(v) for v in dy[:, c].ravel()) for c in range(o)])
    close(dbias, sums, dtype)


def test_bias_gradient_sums_in_float64():
    # 1e8 followed by many ones: float32 accumulation would lose every 1
    dy = np.ones((1, 1, 1, 4097), np.float32)
    dy[0, 0, 0, 0] = 1e8
    _, dbias = K.bias_output_backward(dy, None, None)
    assert dbias[0] == np.float32(1e8 + 4096)


# ------------------------------------------------------------------ pooling

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pool_matches_reference(rng, dtype, case):
    shape, kernel, stride, padding = case
    # few distinct values: many ties inside windows
    x = rng.integers(-3, 3, shape).astype(dtype)
    x.reshape(-1)[rng.choice(x.size, x.size // 10, replace=False)] = np.nan
    y, index = K.max_pool2d(x, kernel, stride, padding, None, None)
    ry, rindex = ref_max_pool(x, kernel, stride, padding)
    np.testing.assert_array_equal(y, ry.astype(dtype))  # NaN where the reference has NaN
    assert index.dtype == np.uint8
    np.testing.assert_array_equal(index, rindex)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = K.max_pool2d_backward(dy, index, shape, kernel, stride, padding, None)
    close(dx, ref_max_pool_backward(dy.astype(np.float64), rindex, shape, kernel, stride, padding), dtype)


def test_max_pool_ties_nan_and_inf_windows():
    x = np.array([[[[1.0, 1.0, 0.0], [1.0, 0.0, np.nan], [-np.inf, -np.inf, -np.inf]]]])
    y, index = K.max_pool2d(x, 2, 1, 0, None, None)
    np.testing.assert_array_equal(y, [[[[1.0, np.nan], [1.0, np.nan]]]])
    np.testing.assert_array_equal(index, [[[[0, 3], [0, 1]]]])  # ties: the first maximum
    y, index = K.max_pool2d(np.array([[[[1.0, np.nan], [np.nan, 2.0]]]], np.float32), 2, 2, 0, None, None)
    assert np.isnan(y).all() and index[0, 0, 0, 0] == 1  # the first NaN
    y, index = K.max_pool2d(np.full((1, 1, 3, 3), -np.inf), 3, 1, 1, None, None)
    # padding never wins: every window's -inf ties go to its first element inside x
    np.testing.assert_array_equal(index, [[[[4, 3, 3], [1, 0, 0], [1, 0, 0]]]])
    dx = K.max_pool2d_backward(np.ones((1, 1, 3, 3)), index, (1, 1, 3, 3), 3, 1, 1, None)
    np.testing.assert_array_equal(dx, [[[[4, 2, 0], [2, 1, 0], [0, 0, 0]]]])


def test_max_pool_big_windows_use_int32_index(rng):
    x = rng.standard_normal((1, 2, 20, 17))
    y, index = K.max_pool2d(x, (17, 16), 1, 0, None, None)
    assert index.dtype == np.int32
    ry, rindex = ref_max_pool(x, (17, 16), (1, 1), (0, 0))
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(index, rindex)
    # a small window may save its index as int32 too
    _, idx32 = K.max_pool2d(x, 2, 2, 0, None, np.empty((1, 2, 10, 8), np.int32))
    _, idx8 = K.max_pool2d(x, 2, 2, 0, None, None)
    np.testing.assert_array_equal(idx32, idx8)
    dy = rng.standard_normal((1, 2, 10, 8))
    np.testing.assert_array_equal(K.max_pool2d_backward(dy, idx32, x.shape, 2, 2, 0, None),
                                  K.max_pool2d_backward(dy, idx8, x.shape, 2, 2, 0, None))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES)
def test_avg_pool_matches_reference(rng, dtype, case):
    shape, kernel, stride, padding = case
    x = rng.standard_normal(shape).astype(dtype)
    y = K.avg_pool2d(x, kernel, stride, padding, None)
    close(y, ref_avg_pool(x.astype(np.float64), kernel, stride, padding), dtype)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = K.avg_pool2d_backward(dy, shape, kernel, stride, padding, None)
    close(dx, ref_avg_pool_backward(dy.astype(np.float64), shape, kernel, stride, padding), dtype)


# ------------------------------------------------------------------ threads

@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_the_same_for_1_and_2_threads(rng, num_threads, dtype):
    x = rng.standard_normal((4, 6, 33, 31)).astype(dtype)
    dcols = rng.standard_normal((6 * 9, 4 * 17 * 16)).astype(dtype)
    dy = rng.standard_normal((4, 6, 17, 16)).astype(dtype)
    dy_pool = rng.standard_normal((4, 6, 17, 16)).astype(dtype)

    def run():
        cols = K.im2col(x, 3, 2, 1, 1, None)
        dx = K.col2im(dcols, x.shape, 3, 2, 1, 1, None)
        y = K.bias_output(dcols[:6], dcols[6, :6].copy(), (4, 6, 17, 16), None)
        dproduct, dbias = K.bias_output_backward(dy, None, None)
        py, index = K.max_pool2d(x, 3, 2, 1, None, None)
        pdx = K.max_pool2d_backward(dy_pool, index, x.shape, 3, 2, 1, None)
        ay = K.avg_pool2d(x, 3, 2, 1, None)
        adx = K.avg_pool2d_backward(dy_pool, x.shape, 3, 2, 1, None)
        return [cols, dx, y, dproduct, dbias, py, index, pdx, ay, adx]

    with num_threads(1):
        one = run()
    with num_threads(2):
        two = run()
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------ bad input

X = np.zeros((2, 3, 6, 5), np.float32)
COLS = np.zeros((27, 2 * 6 * 5), np.float32)
DY_POOL = np.zeros((2, 3, 3, 2), np.float32)
INDEX = np.zeros((2, 3, 3, 2), np.uint8)
BAD_CALLS = [
    (lambda: K.im2col(X.astype(np.int32), 3, 1, 1, 1, None), TypeError, "x must have dtype float32 or float64"),
    (lambda: K.im2col(X[0], 3, 1, 1, 1, None), ValueError, r"x must have shape \(N, C, H, W\)"),
    (lambda: K.im2col(X.transpose(0, 1, 3, 2), 3, 1, 1, 1, None), ValueError, "x must be C-contiguous"),
    (lambda: K.im2col(X, 0, 1, 1, 1, None), ValueError, r"kernel_size must hold ints in \[1, 2\*\*31 - 1\]"),
    (lambda: K.im2col(X, 3, (1, 0), 1, 1, None), ValueError, "stride must hold ints in"),
    (lambda: K.im2col(X, 3, 1, -1, 1, None), ValueError, r"padding must hold ints in \[0,"),
    (lambda: K.im2col(X, 3, 1, 1, 0, None), ValueError, "dilation must hold ints in"),
    (lambda: K.im2col(X, (3, 3, 3), 1, 1, 1, None), TypeError, "kernel_size must be an int or a pair of ints"),
    (lambda: K.im2col(X, 3, "1", 1, 1, None), TypeError, "stride must be an int"),
    (lambda: K.im2col(X, 3, 1, 1, True, None), TypeError, "dilation must be an int"),
    (lambda: K.im2col(X, 7, 1, 0, 1, None), ValueError, r"x's spatial size 6 \(padded: 6\) is smaller than the window's 7"),
    (lambda: K.im2col(X, 3, 1, 0, 3, None), ValueError, "smaller than the window's 7"),
    (lambda: K.im2col(X, 3, 1, 1, 1, np.zeros((27, 59), np.float32)), ValueError, r"out must have shape \(27, 60\)"),
    (lambda: K.im2col(X, 3, 1, 1, 1, COLS.astype(np.float64)), TypeError, "out has dtype float64 but x has float32"),
    (lambda: K.im2col(X, 3, 1, 1, 1, np.broadcast_to(COLS, COLS.shape)), ValueError, "out is read-only"),
    (lambda: K.im2col(X, 3, 1, 1, 1, []), TypeError, "out must be a numpy.ndarray or a CuPy array"),
    (lambda: K.col2im(np.zeros((27, 59), np.float32), X.shape, 3, 1, 1, 1, None), ValueError,
     r"cols must have shape \(27, 60\) \(C\*kh\*kw, N\*OH\*OW\), got \(27, 59\)"),
    (lambda: K.col2im(COLS, 5, 3, 1, 1, 1, None), TypeError, "input_shape must be a tuple of ints"),
    (lambda: K.col2im(COLS, (2, 3, 6), 3, 1, 1, 1, None), ValueError, "input_shape must have 4 entries"),
    (lambda: K.col2im(COLS, (2, -3, 6, 5), 3, 1, 1, 1, None), ValueError, "input_shape must hold sizes >= 0"),
    (lambda: K.col2im(COLS, (2, 3, 6, 2.5), 3, 1, 1, 1, None), TypeError, "input_shape must be an int"),
    (lambda: K.col2im(COLS, X.shape, 3, 1, 1, 1, X.astype(np.float64)), TypeError, "out has dtype float64"),
    (lambda: K.bias_output(COLS[0], None, (2, 1, 6, 5), None), ValueError, r"product must have shape \(1, 60\)"),
    (lambda: K.bias_output(COLS, None, (2, 27, 6, 4), None), ValueError, r"product must have shape \(27, 48\)"),
    (lambda: K.bias_output(COLS, np.zeros(26, np.float32), (2, 27, 6, 5), None), ValueError,
     r"bias must have shape \(27,\)"),
    (lambda: K.bias_output(COLS, np.zeros(27), (2, 27, 6, 5), None), TypeError, "bias has dtype float64"),
    (lambda: K.bias_output(COLS, None, (2,), None), ValueError, "output_shape must have at least 2 entries"),
    (lambda: K.bias_output_backward(np.zeros(4, np.float32), None, None), ValueError, r"dy must have shape \(N, O"),
    (lambda: K.bias_output_backward(X, None, np.zeros(2, np.float32)), ValueError,
     r"out \(dbias\) must have shape \(3,\)"),
    (lambda: K.bias_output_backward(X, np.zeros((3, 60)), None), TypeError, r"out \(dproduct\) has dtype float64"),
    (lambda: K.max_pool2d(X, 2, 2, 2, None, None), ValueError, "padding should be at most half of the kernel size"),
    (lambda: K.max_pool2d(X, 2, 2, 0, None, np.zeros((2, 3, 3, 2), np.float32)), TypeError,
     r"out \(index\) must have dtype uint8 or int32"),
    (lambda: K.max_pool2d(X, (6, 5), 1, 0, None, np.zeros((2, 3, 1, 2), np.uint8)), ValueError,
     r"out \(index\) must have shape"),
    (lambda: K.max_pool2d(np.zeros((1, 1, 20, 20), np.float32), (17, 16), 1, 0, None,
                          np.zeros((1, 1, 4, 5), np.uint8)), TypeError, r"must have dtype int32 \(windows of 272"),
    (lambda: K.max_pool2d(X, 2, 2, 0, np.zeros((2, 3, 3, 3), np.float32), None), ValueError,
     r"out \(y\) must have shape \(2, 3, 3, 2\)"),
    (lambda: K.max_pool2d_backward(DY_POOL, INDEX[:1], X.shape, 2, 2, 0, None), ValueError,
     r"index must have shape \(2, 3, 3, 2\)"),
    (lambda: K.max_pool2d_backward(DY_POOL, INDEX.astype(np.int64), X.shape, 2, 2, 0, None), TypeError,
     "index must have dtype uint8 or int32"),
    (lambda: K.max_pool2d_backward(np.zeros((2, 3, 2, 2), np.float32), INDEX, X.shape, 2, 2, 0, None), ValueError,
     r"dy must have shape \(2, 3, 3, 2\)"),
    (lambda: K.max_pool2d_backward(DY_POOL, INDEX, X.shape, 2, 2, 0, np.zeros(X.shape)), TypeError,
     "out has dtype float64"),
    (lambda: K.avg_pool2d(X, 3, 1, 2, None), ValueError, "padding should be at most half"),
    (lambda: K.avg_pool2d(X.astype(np.float16), 2, 2, 0, None), TypeError, "x must have dtype float32 or float64"),
    (lambda: K.avg_pool2d_backward(DY_POOL, (2, 3, 6, 7), 2, 2, 0, None), ValueError,
     r"dy must have shape \(2, 3, 3, 3\)"),
    (lambda: K.avg_pool2d_backward(DY_POOL, X.shape, 2, 2, 0, X[:1]), ValueError, r"out must have shape \(2, 3, 6, 5\)"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS)
def test_bad_input_is_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_a_refused_call_writes_nothing():
    x = np.ones((1, 2, 5, 5))
    out = np.full((18, 25), 7.0)
    with pytest.raises(ValueError):
        K.im2col(x, 3, 1, (1, 5), 1, out)
    with pytest.raises(ValueError):
        K.im2col(x, 3, 1, 1, 1, out[:, :24])
    assert (out == 7).all()
    y, index = np.full((1, 2, 2, 2), 7.0), np.full((1, 2, 2, 2), 7, np.uint8)
    with pytest.raises(ValueError):
        K.max_pool2d(x, 2, 2, 0, y, index[:, :1])
    assert (y == 7).all() and (index == 7).all()


# ------------------------------------------------------------------ the layers

from test_nn_gradients import check_layer, distinct_values  # noqa: E402


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(3, 2), stride=(1, 2)),
                                dict(kernel_size=4, stride=3, padding=2)])
def test_pool_layers_by_finite_differences(rng, kw):
    check_layer(nn.MaxPool2d(**kw), distinct_values(rng, (2, 2, 8, 7)), rng)
    check_layer(nn.AvgPool2d(**kw), rng.standard_normal((2, 2, 8, 7)), rng)


def test_conv2d_by_finite_differences(rng):
    layer = nn.Conv2d(2, 3, (2, 3), stride=(2, 1), padding=(1, 2), dilation=(2, 1), dtype=np.float64)
    assert check_layer(layer, rng.standard_normal((2, 2, 7, 6)), rng) == 2


def test_conv2d_reuses_its_work_arrays(rng):
    layer = nn.Conv2d(3, 4, 3, padding=1)
    x = rng.standard_normal((2, 3, 5, 5)).astype(np.float32)
    y1 = layer(x)
    layer.backward(np.ones_like(y1))
    work = {k: v for k, v in layer._workspace.items()}
    y2 = layer(x)
    assert y2 is not y1
    np.testing.assert_array_equal(y1, y2)
    layer.backward(np.ones_like(y2))
    assert all(layer._workspace[k] is v for k, v in work.items())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", [dict(stride=2, padding=1), dict(stride=(1, 2), padding=(2, 0), dilation=(1, 2)),
                                dict(padding=1, bias=False)])
def test_conv2d_vs_torch(torch, rng, dtype, kw):
    ours = nn.Conv2d(3, 5, 3, dtype=dtype, **kw)
    theirs = torch.nn.Conv2d(3, 5, 3, **kw).to(torch.float32 if dtype == np.float32 else torch.float64)
    ours.load_state_dict({k: v.detach().numpy() for k, v in theirs.state_dict().items()})
    x = rng.standard_normal((2, 3, 11, 9)).astype(dtype)
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours(x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    ty.backward(torch.tensor(dy))
    dx = ours.backward(dy)
    tol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=tol, atol=tol)
    for name, p in theirs.named_parameters():
        np.testing.assert_allclose(getattr(ours, name).grad, p.grad.numpy(), rtol=tol, atol=tol, err_msg=name)


@pytest.mark.parametrize("kw", [dict(kernel_size=3, stride=1, padding=1), dict(kernel_size=(2, 4), stride=(2, 1), padding=(1, 2)),
                                dict(kernel_size=3, stride=2)])
def test_pool_layers_vs_torch(torch, rng, kw):
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    for ours, theirs in ((nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw)), (nn.AvgPool2d(**kw), torch.nn.AvgPool2d(**kw))):
        tx = torch.tensor(x, requires_grad=True)
        ty = theirs(tx)
        y = ours(x)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        ty.backward(torch.tensor(dy))
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(ours.backward(dy), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_max_pool_layer_has_no_window_size_limit(rng):
    x = rng.standard_normal((1, 1, 20, 20))
    pool = nn.MaxPool2d(17)
    y = pool(x)
    np.testing.assert_array_equal(y, x[:, :, :17, :17].max(axis=(2, 3), keepdims=True))
    dx = pool.backward(np.ones_like(y))
    i, j = np.unravel_index(np.argmax(x[0, 0, :17, :17]), (17, 17))
    assert dx.sum() == 1 and dx[0, 0, i, j] == 1


def test_max_pool_window_over_2_24_elements_is_refused():
    # the CPU kernel keeps each window's running index as a float, exact up to 2**24
    x = np.zeros((1, 1, 4097, 4097), np.float32)
    with pytest.raises(ValueError, match=r"kernel_size \(4097, 4097\) has more than 2\*\*24 elements"):
        K.max_pool2d(x, 4097, 4097, 0, None, None)
    y, index = K.max_pool2d(np.zeros((1, 1, 4096, 4096), np.float32), 4096, 4096, 0, None, None)  # 2**24
    assert y.shape == (1, 1, 1, 1) and index.dtype == np.int32 and index.item() == 0
