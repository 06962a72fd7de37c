"""Fused batch norm + ReLU: batch_norm_forward(..., activation='relu') and
batch_norm_backward(..., activation='relu', y=y).

The fused calls must give bit for bit what the two steps give (batch_norm_forward,
then ReLU in NumPy; backward: batch_norm_backward of dy masked by y > 0), match a float64
reference, central differences in float64 and torch's F.relu(F.batch_norm(...)).
"""

import re

import numpy as np
import pytest

from fastnn import functional as F

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}

LAYOUTS = [
    ((6, 5), 1),
    ((7, 3), -1),
    ((4, 3, 11), 1),
    ((2, 3, 7, 5), 1),
    ((2, 7, 5, 3), -1),
    ((3, 1, 19), -1),
    ((4096, 16), -1),
    ((2, 3000), 1),
    ((37, 5, 7, 7), 1),  # small planes: group-major
    ((2, 3, 9000), 1),  # planes of several pieces
    ((4, 3, 100, 100), 1),
    ((64, 9, 9, 13), -1),
    ((300, 100), -1),  # rows walked four strips at a time, then one, then a tail
    ((50, 40), -1),
]


def layout_id(layout):
    shape, axis = layout
    return "x".join(map(str, shape)) + ("-cl" if axis == -1 else "")


def dtype_id(dt):
    return np.dtype(dt).name


def chan_shape(ndim, axis, C):
    return (1,) * (ndim - 1) + (C,) if axis == -1 else (1, C) + (1,) * (ndim - 2)


def make_case(shape, axis, dtype, seed=0):
    rng = np.random.default_rng(seed)
    C = shape[axis]
    cs = chan_shape(len(shape), axis, C)
    x = (rng.standard_normal(shape) * rng.uniform(0.5, 2, C).reshape(cs)
         + rng.uniform(-1, 1, C).reshape(cs)).astype(dtype)
    w = (rng.uniform(0.5, 1.5, C) * rng.choice([-1.0, 1.0], C)).astype(dtype)
    b = rng.uniform(-0.5, 0.5, C).astype(dtype)
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    return x, w, b, rm, rv, dy


def relu_np(z):
    """The ReLU the fused kernel applies (that of F.relu): +0 for z < 0, z itself
    otherwise (-0 stays -0, NaN stays NaN)."""
    return np.where(z < 0, z.dtype.type(0), z)


def same_bits(a, b):
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def raises_naming(exc_type, name, fn, *args, **kwargs):
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", msg), msg


# =========================================================================== fused == unfused, bitwise


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_fused_equals_unfused_bitwise(dtype, layout, affine, training):
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, dtype, seed=len(shape) * 7 + shape[0])
    if not affine:
        w = b = None
    rm1, rv1, rm2, rv2 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    plain = F.batch_norm_forward(x, w, b, rm1, rv1, training=training, channel_axis=axis)
    fused = F.batch_norm_forward(x, w, b, rm2, rv2, training=training, channel_axis=axis,
                                 activation="relu")
    y = relu_np(plain.y)
    assert same_bits(fused.y, y) and same_bits(F.relu(plain.y), y)
    assert (fused.y == 0).any() and (fused.y > 0).any()
    assert np.array_equal(fused.mean, plain.mean) and np.array_equal(fused.invstd, plain.invstd)
    assert np.array_equal(rm1, rm2) and np.array_equal(rv1, rv2)

    masked = np.where(fused.y > 0, dy, dtype(0))
    ref = F.batch_norm_backward(masked, x, w, fused.mean, fused.invstd, training=training,
                                channel_axis=axis)
    got = F.batch_norm_backward(dy, x, w, fused.mean, fused.invstd, training=training,
                                channel_axis=axis, activation="relu", y=fused.y)
    for name, a, e in zip(("dx", "dweight", "dbias"), got, ref):
        assert np.array_equal(a, e), f"{name} differs from the unfused composition"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_signed_zero_as_relu(dtype, training, simd_levels, simd_level):
    """A -0 pre-activation stays -0, as F.relu keeps it: a constant channel normalizes
    to +0, a negative weight makes it -0 and a bias of -0.0 keeps it."""
    x = np.full((6, 3, 5), 2.5, dtype)
    x[:, 1] = np.arange(30, dtype=dtype).reshape(6, 5) - 14.5  # a channel that is not constant
    w = np.array([-1.5, 1.0, 2.0], dtype)
    b = np.array([-0.0, -0.0, 0.0], dtype)
    rm, rv = np.full(3, 2.5, dtype), np.ones(3, dtype)
    for level in simd_levels:
        with simd_level(level):
            plain = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training)
            fused = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training,
                                         activation="relu")
        assert np.all(np.signbit(fused.y[:, 0])) and np.all(fused.y[:, 0] == 0), level
        assert not np.any(np.signbit(fused.y[:, 2])) and np.all(fused.y[:, 2] == 0), level
        assert same_bits(fused.y, F.relu(plain.y)), level


# =========================================================================== float64 reference


def ref_fused(x, w, b, dy, axis, eps=1e-5):
    """float64 training forward y = relu(bn(x)) and its gradients."""
    x64, dy64 = x.astype(np.float64), dy.astype(np.float64)
    C = x.shape[axis]
    cs = chan_shape(x.ndim, axis, C)
    rows = np.moveaxis(x64, axis, -1).reshape(-1, C)
    m = rows.shape[0]
    mean, var = rows.mean(0), rows.var(0)
    invstd = 1 / np.sqrt(var + eps)
    xhat = (x64 - mean.reshape(cs)) * invstd.reshape(cs)
    z = xhat * w.astype(np.float64).reshape(cs) + b.astype(np.float64).reshape(cs)
    g = np.where(z > 0, dy64, 0.0)
    to_rows = lambda a: np.moveaxis(a, axis, -1).reshape(-1, C)
    db = to_rows(g).sum(0)
    dw = to_rows(g * xhat).sum(0)
    dx = (w * invstd).reshape(cs) / m * (m * g - db.reshape(cs) - xhat * dw.reshape(cs))
    return np.maximum(z, 0), dx, dw, db


@pytest.mark.parametrize("layout", [((4, 3, 11), 1), ((2, 7, 5, 3), -1), ((37, 5, 7, 7), 1)],
                         ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_matches_float64_reference(dtype, layout):
    shape, axis = layout
    x, w, b, _, _, dy = make_case(shape, axis, dtype, seed=3)
    y_ref, dx_ref, dw_ref, db_ref = ref_fused(x, w, b, dy, axis)
    f = F.batch_norm_forward(x, w, b, None, None, channel_axis=axis, activation="relu")
    dx, dw, db = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, channel_axis=axis,
                                       activation="relu", y=f.y)
    for name, a, e in (("y", f.y, y_ref), ("dx", dx, dx_ref), ("dweight", dw, dw_ref),
                       ("dbias", db, db_ref)):
        err = np.max(np.abs(a.astype(np.float64) - e))
        assert err <= TOL[dtype] * np.max(np.abs(e)), f"{name}: error {err:.3e}"


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", [((3, 2, 5), 1), ((5, 3), -1)], ids=layout_id)
def test_finite_differences(layout, training):
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, np.float64, seed=4)

    def loss(xx, ww, bb):
        y = F.batch_norm_forward(xx, ww, bb, rm.copy(), rv.copy(), training=training,
                                 channel_axis=axis, activation="relu").y
        return float(np.sum(y * dy))

    f = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training, channel_axis=axis,
                             activation="relu")
    dx, dw, db = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training,
                                       channel_axis=axis, activation="relu", y=f.y)
    h = 1e-6

    def central(arr, i, fn):
        p, m = arr.copy(), arr.copy()
        p[i] += h
        m[i] -= h
        return (fn(p) - fn(m)) / (2 * h)

    num_dx = np.array([central(x, i, lambda a: loss(a, w, b)) for i in np.ndindex(shape)]).reshape(shape)
    num_dw = np.array([central(w, (c,), lambda a: loss(x, a, b)) for c in range(len(w))])
    num_db = np.array([central(b, (c,), lambda a: loss(x, w, a)) for c in range(len(b))])
    assert np.allclose(dx, num_dx, rtol=1e-6, atol=1e-7)
    assert np.allclose(dw, num_dw, rtol=1e-6, atol=1e-7)
    assert np.allclose(db, num_db, rtol=1e-6, atol=1e-7)


# =========================================================================== torch


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", [((8, 4, 5, 6), 1), ((8, 5, 6, 4), -1), ((32, 7), 1)],
                         ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_matches_torch(dtype, layout, training, torch):
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, dtype, seed=5)
    move = (lambda a: np.ascontiguousarray(np.moveaxis(a, -1, 1))) if axis == -1 else (lambda a: a)
    xt = torch.tensor(move(x), requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = torch.tensor(b, requires_grad=True)
    rmt, rvt = torch.tensor(rm), torch.tensor(rv)
    yt = torch.nn.functional.relu(torch.nn.functional.batch_norm(
        xt, rmt, rvt, wt, bt, training=training, momentum=0.1, eps=1e-5))
    yt.backward(torch.tensor(move(dy)))

    f = F.batch_norm_forward(x, w, b, rm, rv, training=training, channel_axis=axis,
                             activation="relu")
    dx, dw, db = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training,
                                       channel_axis=axis, activation="relu", y=f.y)
    tol = TOL[dtype] * 10
    for name, a, e in (("y", move(f.y), yt), ("dx", move(dx), xt.grad), ("dweight", dw, wt.grad),
                       ("dbias", db, bt.grad), ("running_mean", rm, rmt), ("running_var", rv, rvt)):
        e = e.detach().numpy().astype(np.float64)
        err = np.max(np.abs(a.astype(np.float64) - e))
        assert err <= tol * max(1.0, np.max(np.abs(e))), f"{name}: error {err:.3e}"


# =========================================================================== determinism


DET_LAYOUTS = [((4, 3, 100, 100), 1), ((4096, 16), -1), ((37, 5, 7, 7), 1), ((2, 3, 9000), 1),
               ((3, 4, 5, 33), -1)]


@pytest.mark.parametrize("layout", DET_LAYOUTS, ids=layout_id)
def test_bitwise_across_threads_and_simd(layout, simd_levels, simd_level, num_threads):
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, np.float32, seed=6)

    def run():
        out = []
        for training in (True, False):
            f = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training,
                                     channel_axis=axis, activation="relu")
            out += [f.y, *F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training,
                                                channel_axis=axis, activation="relu", y=f.y)]
        return out

    ref = run()
    for level in simd_levels:
        for n in (1, 2, 3):
            with simd_level(level), num_threads(n):
                got = run()
            for i, (a, e) in enumerate(zip(got, ref)):
                assert np.array_equal(a, e), f"result {i} differs at {level}, {n} threads"


def _misaligned_like(a):
    """An uninitialised C-contiguous array like a, one element past an aligned address (so
    a streamed output pass starts with a partial vector)."""
    buf = np.empty(a.size + 16, a.dtype)
    skip = (-buf.ctypes.data // a.itemsize) % 16 + 1
    return buf[skip:skip + a.size].reshape(a.shape)


# rows layouts: narrow C (16, 33), wide C in one tile of columns (100; 64 and 80, whose
# ReLU mask bits follow the flat index; 700 rows of 64 make two blocks), two tiles (300)
STREAM_LAYOUTS = [((4, 3, 100, 100), 1), ((37, 5, 7, 7), 1), ((2, 3, 9000), 1), ((4096, 16), -1),
                  ((3, 4, 5, 33), -1), ((50, 100), -1), ((9, 3, 3, 300), -1), ((5, 3, 13), 1),
                  ((700, 64), -1), ((2, 9, 9, 80), -1)]


@pytest.mark.parametrize("relu", [False, True], ids=["plain", "relu"])
@pytest.mark.parametrize("layout", STREAM_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_streamed_and_misaligned_outputs_same_bits(dtype, layout, relu, simd_levels, simd_level,
                                                   stream_threshold):
    """Big arrays stream their outputs past the cache; the values must not change, nor
    with an output that starts off a vector boundary (and, fused, the mask kept as bits
    between the backward's passes must line up with dx wherever dx starts)."""
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, dtype, seed=9)
    act = "relu" if relu else None

    def run(misaligned):
        out = []
        for training in (True, False):
            y = _misaligned_like(x) if misaligned else None
            f = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training,
                                     channel_axis=axis, activation=act, out=y)
            dx = _misaligned_like(x) if misaligned else None
            out += [f.y, *F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training,
                                                channel_axis=axis, activation=act,
                                                y=f.y if relu else None, out=dx)]
        return out

    ref = run(False)
    if relu:  # the fused backward is the plain one on dy masked by y > 0
        masked = np.where(ref[0] > 0, dy, dtype(0))
        f = F.batch_norm_forward(x, w, b, None, None, channel_axis=axis)
        plain = F.batch_norm_backward(masked, x, w, f.mean, f.invstd, channel_axis=axis)
        for a, e in zip(ref[1:4], plain):
            assert np.array_equal(a, e)
    for level in simd_levels:
        for threshold in (0, None):
            for misaligned in (False, True):
                with simd_level(level), stream_threshold(0 if threshold == 0 else 1 << 40):
                    got = run(misaligned)
                for i, (a, e) in enumerate(zip(got, ref)):
                    assert np.array_equal(a, e), (
                        f"result {i} differs at {level}, threshold {threshold}, misaligned {misaligned}")


@pytest.mark.parametrize("layout", [((4096, 16), -1), ((3, 4, 5, 33), -1), ((700, 64), -1),
                                    ((2, 9, 9, 80), -1), ((4, 3, 100, 100), 1)], ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_streamed_in_place_same_bits(dtype, layout, stream_threshold):
    """Streamed output passes written over their input (y over x, dx over dy) give the
    out-of-place bits: each value is read before it is written."""
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, dtype, seed=10)
    with stream_threshold(0):
        for training in (True, False):
            f = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training, channel_axis=axis,
                                     activation="relu")
            x2 = x.copy()
            g = F.batch_norm_forward(x2, w, b, rm.copy(), rv.copy(), training=training, channel_axis=axis,
                                     activation="relu", out=(x2, None, None))
            assert np.array_equal(g.y, f.y) and np.shares_memory(g.y, x2)
            want = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training, channel_axis=axis,
                                         activation="relu", y=f.y)
            dy2 = dy.copy()
            got = F.batch_norm_backward(dy2, x, w, f.mean, f.invstd, training=training, channel_axis=axis,
                                        activation="relu", y=f.y, out=(dy2, None, None))
            for a, e in zip(got, want):
                assert np.array_equal(a, e)
            assert np.shares_memory(got[0], dy2)


# =========================================================================== in place, out=


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", [((4, 3, 7, 5), 1), ((4, 7, 5, 3), -1), ((9, 6), 1),
                                    ((2, 3, 8, 8), 1), ((4, 4, 4, 32), -1)],  # runs of whole vectors
                         ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_in_place(dtype, layout, training):
    shape, axis = layout
    x, w, b, rm, rv, dy = make_case(shape, axis, dtype, seed=8)
    f = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), training=training, channel_axis=axis,
                             activation="relu")
    x2 = x.copy()
    g = F.batch_norm_forward(x2, w, b, rm.copy(), rv.copy(), training=training, channel_axis=axis,
                             activation="relu", out=x2)
    assert g.y is x2 and np.array_equal(x2, f.y)

    ref = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training, channel_axis=axis,
                                activation="relu", y=f.y)
    for alias in ("dy", "x", "y"):
        dy2, x2, y2 = dy.copy(), x.copy(), f.y.copy()
        target = {"dy": dy2, "x": x2, "y": y2}[alias]
        res = F.batch_norm_backward(dy2, x2, w, f.mean, f.invstd, training=training,
                                    channel_axis=axis, activation="relu", y=y2, out=target)
        assert res[0] is target
        for a, e in zip(res, ref):
            assert np.array_equal(a, e), f"in place over {alias} differs"
    outs = (np.full(shape, 7, dtype), np.full(shape[axis], 7, dtype), np.full(shape[axis], 7, dtype))
    res = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training, channel_axis=axis,
                                activation="relu", y=f.y, out=outs)
    assert all(r is o for r, o in zip(res, outs)) and all(np.array_equal(r, e) for r, e in zip(res, ref))


# =========================================================================== NaN


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_nan_propagates(dtype):
    shape, axis = (4, 3, 5, 6), 1
    x, w, b, rm, rv, dy = make_case(shape, axis, dtype, seed=9)
    x[1, 1, 2, 3] = np.nan
    f = F.batch_norm_forward(x, w, b, rm.copy(), rv.copy(), activation="relu")
    assert np.all(np.isnan(f.y[:, 1])), "training: NaN spreads over its channel, through the ReLU"
    assert not np.isnan(f.y[:, [0, 2]]).any()
    dx, dw, db = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, activation="relu", y=f.y)
    assert np.isnan(dx[:, 1]).all() and np.isnan(dw[1]) and not np.isnan(dx[:, [0, 2]]).any()
    ev = F.batch_norm_forward(x, w, b, rm, rv, training=False, activation="relu")
    assert np.isnan(ev.y).sum() == 1 and np.isnan(ev.y[1, 1, 2, 3])


# =========================================================================== errors


@pytest.mark.parametrize("bad", ["gelu", "RELU", "", 1, True, ("relu",)])
def test_bad_activation(bad):
    x, w, b, rm, rv, dy = make_case((4, 3, 5), 1, np.float32, seed=10)
    y = np.full(x.shape, 7, np.float32)
    rm0, rv0 = rm.copy(), rv.copy()
    raises_naming(ValueError, "activation", F.batch_norm_forward, x, w, b, rm, rv,
                  activation=bad, out=y)
    assert np.all(y == 7) and np.array_equal(rm, rm0) and np.array_equal(rv, rv0)
    f = F.batch_norm_forward(x, w, b, None, None, activation="relu")
    dx = np.full(x.shape, 7, np.float32)
    raises_naming(ValueError, "activation", F.batch_norm_backward, dy, x, w, f.mean, f.invstd,
                  activation=bad, y=f.y, out=dx)
    assert np.all(dx == 7)


def test_native_module_checks_activation_too():
    import fastnn

    x, w, b, rm, rv, dy = make_case((4, 3, 5), 1, np.float32, seed=11)
    raises_naming(ValueError, "activation", fastnn._cpu.batch_norm_forward, x, w, b, rm, rv,
                  True, 0.1, 1e-5, 1, "tanh", None, None, None)


def test_backward_y_errors_write_nothing():
    x, w, b, rm, rv, dy = make_case((4, 3, 5), 1, np.float32, seed=12)
    f = F.batch_norm_forward(x, w, b, None, None, activation="relu")
    dx, dw, db = np.full(x.shape, 7, np.float32), np.full(3, 7, np.float32), np.full(3, 7, np.float32)
    buf = np.zeros(x.size + 1, np.float32)
    y_shift = buf[1:].reshape(x.shape)
    y_shift[...] = f.y
    cases = [
        (ValueError, "y", dict(activation="relu")),  # y missing
        (ValueError, "y", dict(y=f.y)),  # y without the ReLU
        (ValueError, "y", dict(activation="relu", y=f.y[:, :2])),
        (TypeError, "y", dict(activation="relu", y=f.y.astype(np.float64))),
        (TypeError, "y", dict(activation="relu", y=f.y.tolist())),
        (ValueError, "y", dict(activation="relu", y=f.y[:, :, ::-1])),  # non-contiguous
    ]
    for exc, name, kw in cases:
        raises_naming(exc, name, F.batch_norm_backward, dy, x, w, f.mean, f.invstd,
                      out=(dx, dw, db), **kw)
        assert np.all(dx == 7) and np.all(dw == 7) and np.all(db == 7)
    # dx overlapping y by all but one element
    dx_shift = buf[:-1].reshape(x.shape)
    before = buf.copy()
    raises_naming(ValueError, "y", F.batch_norm_backward, dy, x, w, f.mean, f.invstd,
                  activation="relu", y=y_shift, out=dx_shift)
    assert np.array_equal(buf, before)
