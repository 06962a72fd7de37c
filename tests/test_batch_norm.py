"""Batch norm forward/backward (fastnn.functional.batch_norm_forward / batch_norm_backward).

Everything is checked against a float64 NumPy reference written here from the formulas
(training: batch mean, biased variance, invstd = 1/sqrt(var + eps), running stats updated
with the unbiased variance; eval: running stats), against finite differences, and against
torch where installed.
"""

import os
import re
import threading
import zlib

import numpy as np
import pytest

import fastnn
from fastnn import functional as F

DTYPES = [np.float32, np.float64]

# Tolerances relative to the scale (max |ref|) of the compared quantity.
SCALE_TOL = {np.float32: 1e-5, np.float64: 1e-12}
# Elementwise relative tolerance for per-channel statistics (mean, invstd, running stats).
STAT_RTOL = {np.float32: 1e-6, np.float64: 1e-12}


# =========================================================================== helpers


def chan_shape(ndim, axis, C):
    """Shape that broadcasts a (C,) vector along the channel axis."""
    if axis == -1:
        return (1,) * (ndim - 1) + (C,)
    return (1, C) + (1,) * (ndim - 2)


def to_rows(a, axis):
    """(m, C) float64 view/copy of ``a`` with channels last."""
    a = np.moveaxis(np.asarray(a, dtype=np.float64), axis, -1)
    return a.reshape(-1, a.shape[-1])


def make_x(shape, axis, dtype, seed=0, offset_range=3.0):
    """Random data with a different mean and std per channel (catches channel mix-ups)."""
    rng = np.random.default_rng(seed)
    C = shape[axis]
    cs = chan_shape(len(shape), axis, C)
    means = rng.uniform(-offset_range, offset_range, C).reshape(cs)
    stds = rng.uniform(0.5, 2.0, C).reshape(cs)
    return (rng.standard_normal(shape) * stds + means).astype(dtype)


def make_params(C, dtype, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 1.5, C).astype(dtype) * rng.choice([-1.0, 1.0], C).astype(dtype)
    b = rng.standard_normal(C).astype(dtype)
    rm = rng.standard_normal(C).astype(dtype)
    rv = rng.uniform(0.5, 2.0, C).astype(dtype)
    return w, b, rm, rv


def ref_forward(x, weight, bias, rm, rv, training, momentum, eps, axis):
    """float64 reference. Returns y, mean, invstd, new_rm, new_rv (new_* None if rm is None)."""
    x64 = np.asarray(x, dtype=np.float64)
    C = x.shape[axis]
    cs = chan_shape(x.ndim, axis, C)
    rows = to_rows(x64, axis)
    m = rows.shape[0]
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    b = np.zeros(C) if bias is None else np.asarray(bias, np.float64)
    new_rm = new_rv = None
    if training:
        # shifted by each channel's first value: numpy sums along axis 0 naively, which
        # loses digits when |mean| >> std; x - x0 is exact for such data
        shift = rows[0]
        mean = shift + (rows - shift).mean(axis=0)
        var = ((rows - mean) ** 2).mean(axis=0)
        invstd = 1.0 / np.sqrt(var + eps)
        if rm is not None:
            new_rm = (1 - momentum) * np.asarray(rm, np.float64) + momentum * mean
            new_rv = (1 - momentum) * np.asarray(rv, np.float64) + momentum * var * m / (m - 1)
    else:
        mean = np.asarray(rm, np.float64).copy()
        invstd = 1.0 / np.sqrt(np.asarray(rv, np.float64) + eps)
        new_rm = np.asarray(rm, np.float64).copy()
        new_rv = np.asarray(rv, np.float64).copy()
    y = (x64 - mean.reshape(cs)) * invstd.reshape(cs) * w.reshape(cs) + b.reshape(cs)
    return y, mean, invstd, new_rm, new_rv


def ref_backward(dy, x, weight, mean, invstd, training, axis):
    """float64 reference backward; mean/invstd are the float64 statistics used in forward."""
    x64 = np.asarray(x, dtype=np.float64)
    dy64 = np.asarray(dy, dtype=np.float64)
    C = x.shape[axis]
    cs = chan_shape(x.ndim, axis, C)
    w = np.ones(C) if weight is None else np.asarray(weight, np.float64)
    mean = np.asarray(mean, np.float64)
    invstd = np.asarray(invstd, np.float64)
    xhat = (x64 - mean.reshape(cs)) * invstd.reshape(cs)
    dbias = to_rows(dy64, axis).sum(axis=0)
    dweight = to_rows(dy64 * xhat, axis).sum(axis=0)
    if training:
        m = to_rows(x64, axis).shape[0]
        dx = (w * invstd).reshape(cs) / m * (
            m * dy64 - dbias.reshape(cs) - xhat * dweight.reshape(cs)
        )
    else:
        dx = dy64 * (w * invstd).reshape(cs)
    return dx, dweight, dbias


def assert_close(actual, expected, *, scale_tol=0.0, rtol=0.0, atol=0.0, name="", dtype=None):
    """|actual - expected| <= atol + scale_tol * max|expected| + rtol * |expected|, elementwise.

    NaN/inf anywhere in ``actual`` where ``expected`` is finite fails.
    """
    actual = np.asarray(actual)
    expected_arr = np.asarray(expected)
    assert actual.shape == expected_arr.shape, f"{name}: shape {actual.shape} != {expected_arr.shape}"
    if dtype is not None:
        assert actual.dtype == dtype, f"{name}: dtype {actual.dtype} != {np.dtype(dtype)}"
    a = actual.astype(np.float64)
    e = expected_arr.astype(np.float64)
    if e.size == 0:
        return
    scale = float(np.max(np.abs(e)))
    tol = atol + scale_tol * scale + rtol * np.abs(e)
    err = np.abs(a - e)
    bad = ~(err <= tol)
    if bad.any():
        idx = np.argwhere(bad)[:5]
        worst = np.nanmax(np.where(np.isfinite(err), err, np.inf))
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.size} elements out of tolerance "
            f"(max err {worst:.3e}, scale {scale:.3e}); first at {idx.tolist()}: "
            f"actual {[a[tuple(i)] for i in idx]} expected {[e[tuple(i)] for i in idx]}"
        )


def raises_naming(exc_type, names, fn, *args, **kwargs):
    """Call must raise exc_type, with a message naming one of ``names`` (a word, not a substring)."""
    if isinstance(names, str):
        names = (names,)
    with pytest.raises(exc_type) as info:
        fn(*args, **kwargs)
    msg = str(info.value)
    assert any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", msg) for n in names), (
        f"message {msg!r} does not name any of {names}"
    )
    return info.value


def fwd(x, w=None, b=None, rm=None, rv=None, **kw):
    return F.batch_norm_forward(x, w, b, rm, rv, **kw)


# Layouts: (shape, channel_axis).
SMALL_LAYOUTS = [
    ((6, 5), 1),  # (N, C)
    ((7, 3), -1),  # (N, C) via channel_axis=-1
    ((4, 3, 11), 1),  # (N, C, L), m = 44
    ((2, 3, 7, 5), 1),  # (N, C, H, W), H*W = 35, m = 70
    ((2, 3, 2, 3, 5), 1),  # (N, C, D, H, W)
    ((2, 7, 5, 3), -1),  # (N, H, W, C)
    ((5, 9, 4), -1),  # (N, L, C)
    ((2, 3, 2, 5, 6), -1),  # (N, D, H, W, C)
    ((3, 17, 1, 1), 1),  # C not a multiple of the vector width, spatial 1
    ((3, 1, 19), -1),  # C = 19 channels-last
]
LARGE_LAYOUTS = [
    ((4, 3, 100, 100), 1),
    ((4096, 16), -1),
    ((2, 3000), 1),  # big C, m = 2
    ((64, 9, 9, 13), -1),
    ((3, 5, 1000), 1),
    ((37, 5, 7, 7), 1),  # small planes, walked in groups of planes
    ((2, 3, 9000), 1),  # planes longer than one statistics piece
    ((300, 100), -1),  # rows walked four strips at a time, then one, then a tail
    ((50, 40), -1),  # narrow rows: segments of 80 slots
]
ALL_LAYOUTS = SMALL_LAYOUTS + LARGE_LAYOUTS


def layout_id(layout):
    shape, axis = layout
    return "x".join(map(str, shape)) + ("-cl" if axis == -1 else "")


def layout_seed(layout):
    """A stable per-layout seed (str hashes are salted per process; crc32 is not)."""
    return zlib.crc32(repr(layout).encode()) % 1000


def dtype_id(dt):
    return np.dtype(dt).name


# =========================================================================== forward vs reference


@pytest.mark.parametrize("mode", ["train", "train-norunning", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_forward_matches_reference(dtype, layout, affine, mode):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=layout_seed(layout))
    w, b, rm, rv = make_params(C, dtype)
    if not affine:
        w = b = None
    training = mode != "eval"
    if mode == "train-norunning":
        rm = rv = None
    momentum, eps = 0.1, 1e-5
    x_before = x.copy()
    rm_in = None if rm is None else rm.copy()
    rv_in = None if rv is None else rv.copy()

    out = fwd(x, w, b, rm, rv, training=training, momentum=momentum, eps=eps, channel_axis=axis)
    y_ref, mean_ref, invstd_ref, rm_ref, rv_ref = ref_forward(
        x, w, b, rm_in, rv_in, training, momentum, eps, axis
    )

    assert type(out)._fields == ("y", "mean", "invstd")
    assert out[0] is out.y and out[1] is out.mean and out[2] is out.invstd
    assert out.y.flags.c_contiguous
    assert_close(out.y, y_ref, scale_tol=SCALE_TOL[dtype], name="y", dtype=dtype)
    assert_close(
        out.mean, mean_ref, rtol=STAT_RTOL[dtype],
        atol=STAT_RTOL[dtype] * float(np.max(np.abs(x_before))), name="mean", dtype=dtype,
    )
    assert_close(out.invstd, invstd_ref, rtol=STAT_RTOL[dtype], name="invstd", dtype=dtype)
    assert np.array_equal(x, x_before), "x was modified"

    if rm is not None:
        assert_close(rm, rm_ref, rtol=STAT_RTOL[dtype], atol=1e-7 if dtype == np.float32 else 1e-14,
                     name="running_mean", dtype=dtype)
        assert_close(rv, rv_ref, rtol=STAT_RTOL[dtype], name="running_var", dtype=dtype)
    if mode == "eval":
        assert np.array_equal(rm, rm_in) and np.array_equal(rv, rv_in), "eval touched running stats"
        assert np.array_equal(out.mean, rm_in), "eval mean must equal running_mean"
        assert not np.shares_memory(out.mean, rm), "eval mean must be a copy of running_mean"
        assert not np.shares_memory(out.invstd, rv)


# =========================================================================== backward vs reference


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("layout", ALL_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_backward_matches_reference(dtype, layout, affine, training):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=layout_seed(layout) + 7)
    dy = np.random.default_rng(5).standard_normal(shape).astype(dtype)
    w, b, rm, rv = make_params(C, dtype)
    if not affine:
        w = b = None
    eps = 1e-5
    # forward with fastnn: what a user hands to backward
    fw = fwd(x, w, b, rm.copy(), rv.copy(), training=training, eps=eps, channel_axis=axis)
    _, mean64, invstd64, _, _ = ref_forward(x, w, b, rm, rv, training, 0.1, eps, axis)
    dx_ref, dw_ref, db_ref = ref_backward(dy, x, w, mean64, invstd64, training, axis)

    x_before, dy_before = x.copy(), dy.copy()
    res = F.batch_norm_backward(dy, x, w, fw.mean, fw.invstd, training=training, channel_axis=axis)
    assert isinstance(res, tuple) and len(res) == 3
    dx, dw, db = res
    assert dx.flags.c_contiguous
    tol = SCALE_TOL[dtype]
    assert_close(dx, dx_ref, scale_tol=tol, name="dx", dtype=dtype)
    assert_close(dw, dw_ref, scale_tol=tol, name="dweight", dtype=dtype)
    assert_close(db, db_ref, scale_tol=tol, name="dbias", dtype=dtype)
    assert np.array_equal(x, x_before) and np.array_equal(dy, dy_before), "inputs modified"


# The planes layout walks its work in one of three orders by shape (whole channels when a
# channel's arrays fit a core's cache, group-major for small planes and for planes of a
# page or two, pieces otherwise); the forward reads one array, the backward two, so a
# channel can fit for the one and not the other. One shape per order and pass.
WALK_SHAPES = [
    (16, 8, 32, 32),   # 4 KB planes, 64 KB channels: whole channels
    (37, 5, 7, 7),     # small planes: group-major
    (96, 4, 40, 40),   # 6.4 KB planes, 614 KB channels: forward whole, backward group-major
    (168, 4, 40, 40),  # channels over 1 MB: group-major both
    (64, 3, 3000),     # 12 KB planes, 768 KB channels, 3 channels: pieces
]


@pytest.mark.parametrize("shape", WALK_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_every_planes_walk_matches_reference(shape, num_threads):
    x = make_x(shape, 1, np.float32, seed=11)
    dy = np.random.default_rng(12).standard_normal(shape).astype(np.float32)
    w, b, rm, rv = make_params(shape[1], np.float32)
    y_ref, mean_ref, invstd_ref, _, _ = ref_forward(x, w, b, None, None, True, 0.1, 1e-5, 1)
    dx_ref, dw_ref, db_ref = ref_backward(dy, x, w, mean_ref, invstd_ref, True, 1)
    tol = SCALE_TOL[np.float32]
    for n in (1, 2):
        with num_threads(n):
            out = fwd(x, w, b, None, None, training=True, channel_axis=1)
            dx, dw, db = F.batch_norm_backward(dy, x, w, out.mean, out.invstd, training=True, channel_axis=1)
        assert_close(out.y, y_ref, scale_tol=tol, name=f"y ({n} threads)")
        assert_close(out.invstd, invstd_ref, rtol=STAT_RTOL[np.float32], name=f"invstd ({n} threads)")
        assert_close(dx, dx_ref, scale_tol=tol, name=f"dx ({n} threads)")
        assert_close(dw, dw_ref, scale_tol=tol, name=f"dweight ({n} threads)")
        assert_close(db, db_ref, scale_tol=tol, name=f"dbias ({n} threads)")


# =========================================================================== SIMD levels all correct


ODD_LAYOUTS = [((3, 5, 37), 1), ((37, 19), -1), ((2, 17, 3, 3), 1), ((3, 4, 5, 33), -1), ((5, 1), 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_every_simd_level_matches_reference(dtype, simd_levels, simd_level):
    for level in simd_levels:
        with simd_level(level):
            assert fastnn._cpu.get_simd_level() == level
            for shape, axis in ODD_LAYOUTS:
                C = shape[axis]
                x = make_x(shape, axis, dtype, seed=3)
                dy = np.random.default_rng(4).standard_normal(shape).astype(dtype)
                w, b, rm, rv = make_params(C, dtype)
                for training in (True, False):
                    r_m, r_v = rm.copy(), rv.copy()
                    out = fwd(x, w, b, r_m, r_v, training=training, channel_axis=axis)
                    y_ref, mean64, invstd64, rm_ref, rv_ref = ref_forward(
                        x, w, b, rm, rv, training, 0.1, 1e-5, axis)
                    what = f"[{level} {shape} axis={axis} training={training}]"
                    assert_close(out.y, y_ref, scale_tol=SCALE_TOL[dtype], name="y" + what)
                    assert_close(out.invstd, invstd64, rtol=STAT_RTOL[dtype], name="invstd" + what)
                    assert_close(r_v, rv_ref, rtol=STAT_RTOL[dtype], name="running_var" + what)
                    dx, dw, db = F.batch_norm_backward(
                        dy, x, w, out.mean, out.invstd, training=training, channel_axis=axis)
                    dx_ref, dw_ref, db_ref = ref_backward(dy, x, w, mean64, invstd64, training, axis)
                    assert_close(dx, dx_ref, scale_tol=SCALE_TOL[dtype], name="dx" + what)
                    assert_close(dw, dw_ref, scale_tol=SCALE_TOL[dtype], name="dweight" + what)
                    assert_close(db, db_ref, scale_tol=SCALE_TOL[dtype], name="dbias" + what)


# =========================================================================== special semantics


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_none_weight_bias_equal_ones_zeros(dtype):
    shape, axis = (3, 4, 5, 6), 1
    x = make_x(shape, axis, dtype)
    dy = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    ones, zeros = np.ones(4, dtype), np.zeros(4, dtype)
    for training in (True, False):
        _, _, rm, rv = make_params(4, dtype)
        a = fwd(x, None, None, rm.copy(), rv.copy(), training=training)
        b = fwd(x, ones, zeros, rm.copy(), rv.copy(), training=training)
        tol = SCALE_TOL[dtype] / 10
        assert_close(a.y, b.y, scale_tol=tol, name="y")
        assert np.array_equal(a.mean, b.mean) and np.array_equal(a.invstd, b.invstd)
        ga = F.batch_norm_backward(dy, x, None, a.mean, a.invstd, training=training)
        gb = F.batch_norm_backward(dy, x, ones, b.mean, b.invstd, training=training)
        for name, u, v in zip(("dx", "dweight", "dbias"), ga, gb):
            assert_close(u, v, scale_tol=tol, name=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_weight_only_and_bias_only(dtype):
    shape, axis = (4, 3, 7), 1
    x = make_x(shape, axis, dtype)
    w, b, _, _ = make_params(3, dtype)
    for ww, bb in ((w, None), (None, b)):
        out = fwd(x, ww, bb)
        y_ref = ref_forward(x, ww, bb, None, None, True, 0.1, 1e-5, axis)[0]
        assert_close(out.y, y_ref, scale_tol=SCALE_TOL[dtype], name="y")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_unbiased_running_var_small_batch(dtype):
    # m = 2 per channel: unbiased variance is twice the biased one.
    x = np.array([[1.0, 10.0, -2.0], [3.0, 10.0, 4.0]], dtype=dtype)
    rm = np.zeros(3, dtype)
    rv = np.ones(3, dtype)
    out = fwd(x, None, None, rm, rv, momentum=0.5, eps=1e-5)
    assert_close(out.mean, [2.0, 10.0, 1.0], rtol=1e-7, name="mean")
    assert_close(out.invstd, 1 / np.sqrt(np.array([1.0, 0.0, 9.0]) + 1e-5), rtol=1e-6, name="invstd")
    assert_close(rm, [1.0, 5.0, 0.5], rtol=1e-7, name="running_mean")
    # unbiased var = [2, 0, 18]
    assert_close(rv, [0.5 + 1.0, 0.5 + 0.0, 0.5 + 9.0], rtol=1e-7, name="running_var")
    assert_close(out.y, [[-1, 0, -1], [1, 0, 1]], atol=1e-5, name="y")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_momentum_bounds(dtype):
    shape, axis = (5, 3, 4), 1
    x = make_x(shape, axis, dtype)
    _, _, rm, rv = make_params(3, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    fwd(x, None, None, rm, rv, momentum=0.0)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0), "momentum=0 must keep running stats"
    fwd(x, None, None, rm, rv, momentum=1.0)
    rows = to_rows(x, axis)
    assert_close(rm, rows.mean(0), rtol=STAT_RTOL[dtype], atol=1e-7, name="running_mean")
    assert_close(rv, rows.var(0, ddof=1), rtol=STAT_RTOL[dtype], name="running_var")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_eps_is_used(dtype):
    shape, axis = (6, 2, 3), 1
    x = make_x(shape, axis, dtype) * dtype(0.01)
    for eps in (1e-5, 0.5, 3.0):
        out = fwd(x, eps=eps)
        y_ref, _, invstd_ref, _, _ = ref_forward(x, None, None, None, None, True, 0.1, eps, axis)
        assert_close(out.invstd, invstd_ref, rtol=STAT_RTOL[dtype], name=f"invstd eps={eps}")
        assert_close(out.y, y_ref, scale_tol=SCALE_TOL[dtype], name=f"y eps={eps}")


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_read_only_inputs_are_accepted(dtype):
    shape, axis = (4, 3, 5), 1
    x = make_x(shape, axis, dtype)
    w, b, rm, rv = make_params(3, dtype)
    dy = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    for a in (x, w, b, dy):
        a.flags.writeable = False
    out = fwd(x, w, b, rm, rv)
    y_ref = ref_forward(x, w, b, None, None, True, 0.1, 1e-5, axis)[0]
    assert_close(out.y, y_ref, scale_tol=SCALE_TOL[dtype], name="y")
    mean, invstd = out.mean, out.invstd
    mean.flags.writeable = False
    invstd.flags.writeable = False
    dx, dw, db = F.batch_norm_backward(dy, x, w, mean, invstd)
    assert dx.shape == shape and dw.shape == (3,) and db.shape == (3,)
    assert dx.flags.writeable


def test_2d_channel_axis_1_and_minus_1_identical():
    x = make_x((33, 7), 1, np.float32)
    w, b, rm, rv = make_params(7, np.float32)
    dy = np.random.default_rng(0).standard_normal((33, 7)).astype(np.float32)
    rm1, rv1, rm2, rv2 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    a = fwd(x, w, b, rm1, rv1, channel_axis=1)
    c = fwd(x, w, b, rm2, rv2, channel_axis=-1)
    for u, v in zip(a, c):
        assert np.array_equal(u, v)
    assert np.array_equal(rm1, rm2) and np.array_equal(rv1, rv2)
    ga = F.batch_norm_backward(dy, x, w, a.mean, a.invstd, channel_axis=1)
    gc = F.batch_norm_backward(dy, x, w, c.mean, c.invstd, channel_axis=-1)
    for u, v in zip(ga, gc):
        assert np.array_equal(u, v)


def test_eval_one_value_per_channel_is_fine():
    x = np.array([[1.0, 2.0, 3.0]])
    rm = np.array([0.5, 1.0, -1.0])
    rv = np.array([1.0, 4.0, 0.25])
    out = fwd(x, None, None, rm, rv, training=False, eps=1e-5)
    assert_close(out.y, (x - rm) / np.sqrt(rv + 1e-5), rtol=1e-13, name="y")


# =========================================================================== empty batch (eval)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", [((0, 3, 4), 1), ((0, 5, 3), -1), ((0, 6), 1)], ids=layout_id)
def test_empty_batch_eval(dtype, layout):
    shape, axis = layout
    C = shape[axis]
    x = np.zeros(shape, dtype)
    w, b, rm, rv = make_params(C, dtype)
    rm0, rv0 = rm.copy(), rv.copy()
    out = fwd(x, w, b, rm, rv, training=False, channel_axis=axis)
    assert out.y.shape == shape and out.y.dtype == dtype
    assert np.array_equal(out.mean, rm0)
    assert_close(out.invstd, 1 / np.sqrt(rv0.astype(np.float64) + 1e-5), rtol=STAT_RTOL[dtype],
                 name="invstd")
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)
    dx, dw, db = F.batch_norm_backward(x.copy(), x, w, out.mean, out.invstd, training=False,
                                       channel_axis=axis)
    assert dx.shape == shape
    assert dw.shape == (C,) and db.shape == (C,)
    assert np.all(dw == 0) and np.all(db == 0)


# =========================================================================== finite differences (float64)


FD_LAYOUTS = [((3, 2), 1), ((4, 2, 3), 1), ((2, 3, 2, 2), 1), ((3, 2, 4), -1), ((2, 2, 2, 3), -1)]


def _numeric_jacobian(f, v, h=1e-6):
    """d f(v) / d v for f returning an array; v is perturbed in place and restored."""
    base = f()
    J = np.empty((base.size, v.size))
    flat = v.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + h
        fp = f().reshape(-1).copy()
        flat[i] = old - h
        fm = f().reshape(-1).copy()
        flat[i] = old
        J[:, i] = (fp - fm) / (2 * h)
    return J


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", FD_LAYOUTS, ids=layout_id)
def test_backward_full_jacobian_finite_differences(layout, training):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, np.float64, seed=11)
    w, b, rm, rv = make_params(C, np.float64, seed=12)

    def forward_y():
        return fwd(x, w, b, rm, rv, training=False, channel_axis=axis).y if not training else \
            fwd(x, w, b, None, None, training=True, channel_axis=axis).y

    Jx = _numeric_jacobian(forward_y, x)
    Jw = _numeric_jacobian(forward_y, w)
    Jb = _numeric_jacobian(forward_y, b)

    out = fwd(x, w, b, rm, rv, training=False, channel_axis=axis) if not training else \
        fwd(x, w, b, None, None, training=True, channel_axis=axis)
    n = x.size
    Ax, Aw, Ab = np.empty((n, n)), np.empty((n, C)), np.empty((n, C))
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        dx, dw, db = F.batch_norm_backward(
            e.reshape(shape), x, w, out.mean, out.invstd, training=training, channel_axis=axis)
        Ax[k], Aw[k], Ab[k] = dx.reshape(-1), dw, db
    assert_close(Ax, Jx, atol=1e-7, rtol=1e-6, name="d y / d x")
    assert_close(Aw, Jw, atol=1e-7, rtol=1e-6, name="d y / d weight")
    assert_close(Ab, Jb, atol=1e-7, rtol=1e-6, name="d y / d bias")
    if training:  # the batch-statistics terms matter: the Jacobian is not diagonal-by-channel
        assert np.abs(Jx - np.diag(np.diag(Jx))).max() > 1e-3


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("layout", [((4, 3, 5, 5), 1), ((6, 5, 4), -1)], ids=layout_id)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_backward_directional_derivatives(layout, training, affine):
    shape, axis = layout
    C = shape[axis]
    rng = np.random.default_rng(21)
    x = make_x(shape, axis, np.float64, seed=22)
    w, b, rm, rv = make_params(C, np.float64, seed=23)
    if not affine:
        w = b = None
    g = rng.standard_normal(shape)

    def loss(xx, ww, bb):
        if training:
            y = fwd(xx, ww, bb, None, None, training=True, channel_axis=axis).y
        else:
            y = fwd(xx, ww, bb, rm, rv, training=False, channel_axis=axis).y
        return float(np.sum(y * g))

    out = fwd(x, w, b, None, None, training=True, channel_axis=axis) if training else \
        fwd(x, w, b, rm, rv, training=False, channel_axis=axis)
    dx, dw, db = F.batch_norm_backward(g, x, w, out.mean, out.invstd, training=training,
                                       channel_axis=axis)
    h = 1e-6
    for trial in range(3):
        v = rng.standard_normal(shape)
        num = (loss(x + h * v, w, b) - loss(x - h * v, w, b)) / (2 * h)
        ana = float(np.sum(dx * v))
        assert abs(num - ana) <= 1e-6 * max(1.0, abs(num)), (num, ana)
    # dweight / dbias by coordinates (weight None means ones)
    w_full = np.ones(C) if w is None else w
    b_full = np.zeros(C) if b is None else b
    for c in range(C):
        e = np.zeros(C)
        e[c] = h
        num_w = (loss(x, w_full + e, b_full) - loss(x, w_full - e, b_full)) / (2 * h)
        num_b = (loss(x, w_full, b_full + e) - loss(x, w_full, b_full - e)) / (2 * h)
        assert abs(num_w - dw[c]) <= 1e-6 * max(1.0, abs(num_w)), (c, num_w, dw[c])
        assert abs(num_b - db[c]) <= 1e-6 * max(1.0, abs(num_b)), (c, num_b, db[c])


# =========================================================================== NCHW vs NHWC


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("shape", [(4, 5, 6, 7), (3, 4, 17), (2, 3, 4, 5, 6), (8, 16, 9, 9)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_channels_first_vs_channels_last(dtype, shape, training):
    C = shape[1]
    x = make_x(shape, 1, dtype, seed=31)
    dy = np.random.default_rng(32).standard_normal(shape).astype(dtype)
    w, b, rm, rv = make_params(C, dtype, seed=33)
    perm = (0,) + tuple(range(2, len(shape))) + (1,)
    inv = np.argsort(perm)
    x_cl = np.ascontiguousarray(x.transpose(perm))
    dy_cl = np.ascontiguousarray(dy.transpose(perm))

    rm1, rv1, rm2, rv2 = rm.copy(), rv.copy(), rm.copy(), rv.copy()
    a = fwd(x, w, b, rm1, rv1, training=training, channel_axis=1)
    c = fwd(x_cl, w, b, rm2, rv2, training=training, channel_axis=-1)
    tol = 1e-6 if dtype == np.float32 else 1e-13
    assert_close(c.y.transpose(inv), a.y, scale_tol=tol, name="y")
    assert_close(c.mean, a.mean, rtol=tol, atol=tol, name="mean")
    assert_close(c.invstd, a.invstd, rtol=tol, name="invstd")
    assert_close(rm2, rm1, rtol=tol, atol=tol, name="running_mean")
    assert_close(rv2, rv1, rtol=tol, name="running_var")

    ga = F.batch_norm_backward(dy, x, w, a.mean, a.invstd, training=training, channel_axis=1)
    gc = F.batch_norm_backward(dy_cl, x_cl, w, c.mean, c.invstd, training=training, channel_axis=-1)
    assert_close(gc[0].transpose(inv), ga[0], scale_tol=tol, name="dx")
    assert_close(gc[1], ga[1], scale_tol=tol, name="dweight")
    assert_close(gc[2], ga[2], scale_tol=tol, name="dbias")


# =========================================================================== determinism


DET_CASES = [
    ((16, 64, 28, 28), 1, np.float32),
    ((3, 5, 1000), 1, np.float32),
    ((20000, 24), -1, np.float32),
    ((3, 5, 1000), 1, np.float64),
    ((20000, 24), -1, np.float64),
    ((8, 14, 14, 40), -1, np.float32),
    ((5, 3, 37, 41), 1, np.float64),
    ((37, 5, 7, 7), 1, np.float32),  # small planes: groups of planes, a short last group
    ((130, 16, 3, 3), 1, np.float64),
    ((2, 3, 5000), 1, np.float32),  # planes cut into pieces
    ((168, 4, 40, 40), 1, np.float32),  # pages of planes, channels over 1 MB: group-major
    ((300, 100), -1, np.float64),  # rows: strips walked side by side
]


def _run_everything(x, dy, w, b, rm, rv, axis):
    r_m, r_v = rm.copy(), rv.copy()
    tr = fwd(x, w, b, r_m, r_v, training=True, momentum=0.1, channel_axis=axis)
    g_tr = F.batch_norm_backward(dy, x, w, tr.mean, tr.invstd, training=True, channel_axis=axis)
    ev = fwd(x, w, b, r_m, r_v, training=False, channel_axis=axis)
    g_ev = F.batch_norm_backward(dy, x, w, ev.mean, ev.invstd, training=False, channel_axis=axis)
    return {
        "y": tr.y, "mean": tr.mean, "invstd": tr.invstd, "running_mean": r_m, "running_var": r_v,
        "dx": g_tr[0], "dweight": g_tr[1], "dbias": g_tr[2],
        "y_eval": ev.y, "dx_eval": g_ev[0], "dweight_eval": g_ev[1], "dbias_eval": g_ev[2],
    }


def _det_inputs(shape, axis, dtype):
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=41)
    dy = np.random.default_rng(42).standard_normal(shape).astype(dtype)
    w, b, rm, rv = make_params(C, dtype, seed=43)
    return x, dy, w, b, rm, rv


def _assert_bitwise(results, label_a, label_b):
    for key in results[label_a]:
        a, c = results[label_a][key], results[label_b][key]
        assert a.dtype == c.dtype and a.shape == c.shape
        assert np.array_equal(a, c), (
            f"{key}: {label_a} vs {label_b} differ "
            f"(max abs diff {np.max(np.abs(a.astype(np.float64) - c.astype(np.float64))):.3e})"
        )


@pytest.mark.parametrize("case", DET_CASES,
                         ids=lambda c: "x".join(map(str, c[0])) + ("-cl" if c[1] == -1 else "")
                         + "-" + np.dtype(c[2]).name)
def test_bitwise_deterministic_across_threads(case, simd_levels, simd_level, num_threads):
    shape, axis, dtype = case
    inputs = _det_inputs(shape, axis, dtype)
    for level in simd_levels:
        with simd_level(level):
            results = {}
            for n in (1, 2, 3):
                with num_threads(n):
                    results[n] = _run_everything(*inputs, axis)
            _assert_bitwise(results, 1, 2)
            _assert_bitwise(results, 1, 3)


@pytest.mark.parametrize("case", DET_CASES,
                         ids=lambda c: "x".join(map(str, c[0])) + ("-cl" if c[1] == -1 else "")
                         + "-" + np.dtype(c[2]).name)
def test_bitwise_identical_across_simd_levels(case, simd_levels, simd_level, num_threads):
    if len(simd_levels) < 2:
        pytest.skip("only one SIMD level available")
    shape, axis, dtype = case
    inputs = _det_inputs(shape, axis, dtype)
    results = {}
    with num_threads(2):
        for level in simd_levels:
            with simd_level(level):
                results[level] = _run_everything(*inputs, axis)
    first = simd_levels[0]
    for level in simd_levels[1:]:
        _assert_bitwise(results, first, level)


def test_concurrent_python_threads_give_same_results():
    shape, axis = (8, 16, 20, 20), 1
    _, dy, w, b, rm, rv = _det_inputs(shape, axis, np.float32)
    inputs = [(make_x(shape, axis, np.float32, seed=s), dy, w, b, rm, rv) for s in range(4)]
    expected = [_run_everything(*inp, axis) for inp in inputs]
    got = [None] * len(inputs)
    errors = []

    def work(i):
        try:
            for _ in range(3):
                got[i] = _run_everything(*inputs[i], axis)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for e, g in zip(expected, got):
        for key in e:
            assert np.array_equal(e[key], g[key]), key


# =========================================================================== out= and in place


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", [((4, 3, 7, 5), 1), ((4, 7, 5, 3), -1), ((9, 6), 1)],
                         ids=layout_id)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_forward_in_place_out_x(dtype, layout, training):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=51)
    w, b, rm, rv = make_params(C, dtype)
    rm1, rv1 = rm.copy(), rv.copy()
    ref = fwd(x, w, b, rm1, rv1, training=training, channel_axis=axis)

    for out_arg in ("single", "tuple"):
        xin = x.copy()
        rm2, rv2 = rm.copy(), rv.copy()
        o = xin if out_arg == "single" else (xin, None, None)
        res = fwd(xin, w, b, rm2, rv2, training=training, channel_axis=axis, out=o)
        assert res.y is xin
        assert np.array_equal(xin, ref.y), "in-place y differs from out-of-place y"
        assert np.array_equal(res.mean, ref.mean) and np.array_equal(res.invstd, ref.invstd)
        assert np.array_equal(rm2, rm1) and np.array_equal(rv2, rv1)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", [((4, 3, 7, 5), 1), ((4, 7, 5, 3), -1), ((9, 6), 1)],
                         ids=layout_id)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("alias", ["dy", "x"])
def test_backward_in_place(dtype, layout, training, alias):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=52)
    dy = np.random.default_rng(53).standard_normal(shape).astype(dtype)
    w, b, rm, rv = make_params(C, dtype)
    f = fwd(x, w, b, rm, rv, training=training, channel_axis=axis)
    ref = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, training=training, channel_axis=axis)

    for out_arg in ("single", "tuple"):
        x2, dy2 = x.copy(), dy.copy()
        target = dy2 if alias == "dy" else x2
        o = target if out_arg == "single" else (target, None, None)
        dx, dw, db = F.batch_norm_backward(dy2, x2, w, f.mean, f.invstd, training=training,
                                           channel_axis=axis, out=o)
        assert dx is target
        assert np.array_equal(dx, ref[0]), f"in-place dx (out={alias}) differs from out-of-place"
        assert np.array_equal(dw, ref[1]) and np.array_equal(db, ref[2])


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_forward_out_arrays_are_returned(dtype):
    shape, axis = (4, 3, 5), 1
    x = make_x(shape, axis, dtype)
    w, b, rm, rv = make_params(3, dtype)
    ref = fwd(x, w, b, rm.copy(), rv.copy())

    y, mean, invstd = np.full(shape, 7, dtype), np.full(3, 7, dtype), np.full(3, 7, dtype)
    res = fwd(x, w, b, rm.copy(), rv.copy(), out=(y, mean, invstd))
    assert res.y is y and res.mean is mean and res.invstd is invstd
    assert np.array_equal(y, ref.y) and np.array_equal(mean, ref.mean)
    assert np.array_equal(invstd, ref.invstd)

    y2 = np.full(shape, 7, dtype)
    res = fwd(x, w, b, rm.copy(), rv.copy(), out=y2)
    assert res.y is y2 and np.array_equal(y2, ref.y)
    assert np.array_equal(res.mean, ref.mean)

    mean3 = np.full(3, 7, dtype)
    res = fwd(x, w, b, rm.copy(), rv.copy(), out=(None, mean3, None))
    assert res.mean is mean3 and np.array_equal(mean3, ref.mean)
    assert np.array_equal(res.y, ref.y) and np.array_equal(res.invstd, ref.invstd)

    # eval: mean/invstd out arrays receive running_mean and 1/sqrt(running_var + eps)
    y4, mean4, invstd4 = np.full(shape, 7, dtype), np.full(3, 7, dtype), np.full(3, 7, dtype)
    ev_ref = fwd(x, w, b, rm, rv, training=False)
    res = fwd(x, w, b, rm, rv, training=False, out=(y4, mean4, invstd4))
    assert res.y is y4 and res.mean is mean4 and res.invstd is invstd4
    assert np.array_equal(y4, ev_ref.y) and np.array_equal(mean4, rm)
    assert np.array_equal(invstd4, ev_ref.invstd)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_backward_out_arrays_are_returned(dtype):
    shape, axis = (4, 3, 5), 1
    x = make_x(shape, axis, dtype)
    dy = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    w, _, _, _ = make_params(3, dtype)
    f = fwd(x, w)
    ref = F.batch_norm_backward(dy, x, w, f.mean, f.invstd)

    dx, dw, db = np.full(shape, 7, dtype), np.full(3, 7, dtype), np.full(3, 7, dtype)
    res = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, out=(dx, dw, db))
    assert res[0] is dx and res[1] is dw and res[2] is db
    for got, exp in zip((dx, dw, db), ref):
        assert np.array_equal(got, exp)

    dx2 = np.full(shape, 7, dtype)
    res = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, out=dx2)
    assert res[0] is dx2 and np.array_equal(dx2, ref[0])
    assert np.array_equal(res[1], ref[1]) and np.array_equal(res[2], ref[2])

    db3 = np.full(3, 7, dtype)
    res = F.batch_norm_backward(dy, x, w, f.mean, f.invstd, out=(None, None, db3))
    assert res[2] is db3 and np.array_equal(db3, ref[2])
    assert np.array_equal(res[0], ref[0]) and np.array_equal(res[1], ref[1])


# =========================================================================== NaN / constant channel


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("layout", [((4, 3, 5, 6), 1), ((4, 5, 6, 3), -1), ((40, 3), 1),
                                    ((2, 3, 100, 100), 1)], ids=layout_id)
def test_nan_propagates_to_its_channel_only(dtype, layout):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=61)
    idx = [1] * len(shape)  # element with channel index 1
    idx[axis] = 1
    x[tuple(idx)] = np.nan
    w, b, rm, rv = make_params(C, dtype)
    dy = np.random.default_rng(62).standard_normal(shape).astype(dtype)
    ch = [slice(None)] * len(shape)
    ch[axis] = 1
    ch = tuple(ch)
    others = [c for c in range(C) if c != 1]

    rm_in, rv_in = rm.copy(), rv.copy()
    out = fwd(x, w, b, rm, rv, channel_axis=axis)
    assert np.all(np.isnan(out.y[ch])), "NaN must spread over its channel"
    assert np.isnan(out.mean[1]) and np.isnan(out.invstd[1])
    assert np.isnan(rm[1]) and np.isnan(rv[1])
    y_ref, mean64, invstd64, rm_ref, rv_ref = ref_forward(
        x, w, b, rm_in, rv_in, True, 0.1, 1e-5, axis)
    yo = np.take(out.y, others, axis=axis)
    assert_close(yo, np.take(y_ref, others, axis=axis), scale_tol=SCALE_TOL[dtype], name="y")
    assert_close(rv[others], rv_ref[others], rtol=STAT_RTOL[dtype], name="running_var")

    dx, dw, db = F.batch_norm_backward(dy, x, w, out.mean, out.invstd, channel_axis=axis)
    assert np.all(np.isnan(dx[ch])) and np.isnan(dw[1])
    dx_ref, dw_ref, db_ref = ref_backward(dy, x, w, mean64, invstd64, True, axis)
    assert_close(np.take(dx, others, axis=axis), np.take(dx_ref, others, axis=axis),
                 scale_tol=SCALE_TOL[dtype], name="dx")
    assert_close(dw[others], dw_ref[others], scale_tol=SCALE_TOL[dtype], name="dweight")
    # dbias does not depend on x at all
    assert_close(db, db_ref, scale_tol=SCALE_TOL[dtype], name="dbias")

    # eval: NaN stays in its element
    ev = fwd(x, w, b, rm_in, rv_in, training=False, channel_axis=axis)
    nan_mask = np.isnan(ev.y)
    assert nan_mask[tuple(idx)] and nan_mask.sum() == 1


CONST_LAYOUTS = [((2, 3, 7, 5), 1), ((5, 9, 3), -1), ((4, 3, 100, 100), 1), ((4096, 16), -1),
                 ((3, 4, 13), 1)]


@pytest.mark.parametrize("value", [0.1, -3.3, 12345.678, 1e-30])
@pytest.mark.parametrize("layout", CONST_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_constant_channel_normalizes_to_exactly_zero(dtype, layout, value):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=71)
    ch = [slice(None)] * len(shape)
    ch[axis] = 0
    ch = tuple(ch)
    x[ch] = dtype(value)

    out = fwd(x, channel_axis=axis)
    assert np.all(out.y[ch] == 0), f"constant channel gives y up to {np.max(np.abs(out.y[ch]))}"
    assert out.mean[0] == dtype(value)
    assert_close(out.invstd[:1], [1 / np.sqrt(1e-5)], rtol=1e-6, name="invstd")

    w, b, rm, rv = make_params(C, dtype)
    out = fwd(x, w, b, rm, rv, channel_axis=axis)
    assert np.all(out.y[ch] == b[0]), "constant channel must give exactly bias"
    assert_close(rv[:1], [(1 - 0.1) * float(make_params(C, dtype)[3][0])], rtol=STAT_RTOL[dtype],
                 name="running_var")


# =========================================================================== precision (float32)


PRECISION_LAYOUTS = [((8, 4, 16, 16), 1), ((8, 16, 16, 4), -1), ((64, 4), 1)]


def _large_mean_data(shape, axis):
    rng = np.random.default_rng(81)
    return (1e4 + 1e-2 * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("layout", PRECISION_LAYOUTS, ids=layout_id)
def test_precision_large_mean_small_std_forward(layout):
    shape, axis = layout
    C = shape[axis]
    x = _large_mean_data(shape, axis)
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    out = fwd(x, None, None, rm, rv, channel_axis=axis)
    y_ref, mean64, invstd64, rm_ref, rv_ref = ref_forward(
        x, None, None, np.zeros(C), np.ones(C), True, 0.1, 1e-5, axis)
    err = np.abs(out.y.astype(np.float64) - y_ref)
    assert err.max() <= 1e-5 * np.abs(y_ref).max(), f"max err {err.max():.3e}"
    big = np.abs(y_ref) > 0.1
    rel = err[big] / np.abs(y_ref[big])
    assert rel.max() <= 1e-5, f"max elementwise rel err {rel.max():.3e}"
    # the float32 mean is the correctly rounded float64 mean (within one ulp)
    assert np.all(np.abs(out.mean.astype(np.float64) - mean64) <= np.spacing(np.float32(1e4)))
    assert_close(out.invstd, invstd64, rtol=1e-5, name="invstd")
    assert_close(rv, rv_ref, rtol=1e-5, name="running_var")

    # affine: relative to the scale of y
    w, b, _, _ = make_params(C, np.float32)
    out = fwd(x, w, b, channel_axis=axis)
    y_ref = ref_forward(x, w, b, None, None, True, 0.1, 1e-5, axis)[0]
    assert_close(out.y, y_ref, scale_tol=1e-5, name="y (affine)")


@pytest.mark.parametrize("layout", PRECISION_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
def test_precision_large_mean_small_std_backward(layout, affine):
    shape, axis = layout
    C = shape[axis]
    x = _large_mean_data(shape, axis)
    dy = np.random.default_rng(82).standard_normal(shape).astype(np.float32)
    w = make_params(C, np.float32)[0] if affine else None
    out = fwd(x, w, None, channel_axis=axis)
    _, mean64, invstd64, _, _ = ref_forward(x, w, None, None, None, True, 0.1, 1e-5, axis)
    dx_ref, dw_ref, db_ref = ref_backward(dy, x, w, mean64, invstd64, True, axis)
    dx, dw, db = F.batch_norm_backward(dy, x, w, out.mean, out.invstd, channel_axis=axis)
    assert_close(dx, dx_ref, scale_tol=1e-4, name="dx")
    assert_close(dw, dw_ref, scale_tol=1e-5, name="dweight")
    assert_close(db, db_ref, scale_tol=1e-5, name="dbias")


@pytest.mark.parametrize("layout", PRECISION_LAYOUTS, ids=layout_id)
def test_precision_large_mean_eval(layout):
    # eval must use (x - mean) * s + bias, not the folded x * s + shift
    shape, axis = layout
    C = shape[axis]
    x = _large_mean_data(shape, axis)
    rows = to_rows(x, axis)
    rm = rows.mean(0).astype(np.float32)
    rv = rows.var(0).astype(np.float32)
    w, b, _, _ = make_params(C, np.float32)
    out = fwd(x, w, b, rm, rv, training=False, channel_axis=axis)
    y_ref = ref_forward(x, w, b, rm, rv, False, 0.1, 1e-5, axis)[0]
    assert_close(out.y, y_ref, scale_tol=1e-5, name="y")
    dy = np.random.default_rng(83).standard_normal(shape).astype(np.float32)
    dx, dw, db = F.batch_norm_backward(dy, x, w, out.mean, out.invstd, training=False,
                                       channel_axis=axis)
    dx_ref, dw_ref, db_ref = ref_backward(dy, x, w, rm, 1 / np.sqrt(rv.astype(np.float64) + 1e-5),
                                          False, axis)
    assert_close(dx, dx_ref, scale_tol=1e-5, name="dx")
    assert_close(dw, dw_ref, scale_tol=1e-5, name="dweight")
    assert_close(db, db_ref, scale_tol=1e-5, name="dbias")


def test_precision_float64_large_mean():
    rng = np.random.default_rng(84)
    shape = (8, 3, 10, 10)
    x = 1e8 + 1e-3 * rng.standard_normal(shape)
    out = fwd(x)
    y_ref, mean64, invstd64, _, _ = ref_forward(x, None, None, None, None, True, 0.1, 1e-5, 1)
    assert_close(out.y, y_ref, scale_tol=1e-6, name="y")


# =========================================================================== errors


def _base_forward_args(dtype=np.float32):
    shape = (4, 3, 5)
    x = make_x(shape, 1, dtype, seed=91)
    w, b, rm, rv = make_params(3, dtype)
    return dict(x=x, weight=w, bias=b, running_mean=rm, running_var=rv,
                kw=dict(training=True, momentum=0.1, eps=1e-5, channel_axis=1))


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def _overlapping_pair(shape, dtype, shift=1):
    """Two arrays of ``shape`` sharing memory, offset by ``shift`` elements."""
    n = int(np.prod(shape))
    buf = np.zeros(n + shift, dtype)
    return buf[shift:].reshape(shape), buf[:n].reshape(shape)


def _out_overlapping(name, shift=1):
    """Mutator: argument ``name`` and out share memory, offset by ``shift`` elements."""
    def mod(a):
        arg, out = _overlapping_pair(a[name].shape, np.float32, shift)
        arg[...] = a[name]
        a[name] = arg
        a["kw"]["out"] = out
    return mod


def _two_stat_outs_same(a):
    """Mutator: the two per-channel outputs are one array."""
    s = _sentinel(3)
    a["kw"]["out"] = (None, s, s)


def _set(**changes):
    def mod(a):
        for k, v in changes.items():
            if k in a:
                a[k] = v(a) if callable(v) else v
            else:
                a["kw"][k] = v(a) if callable(v) else v
    return mod


def _sentinel(shape, dtype=np.float32):
    return np.full(shape, 7, dtype)


def _strided(n, dtype=np.float32):
    """A non-contiguous (n,) view with positive values."""
    view = (np.arange(2 * n, dtype=dtype) + 1)[::2]
    assert not view.flags.c_contiguous
    return view


def _mean_view_of_x(a):
    a["kw"]["out"] = (None, a["x"].reshape(-1)[:3], None)


def _mean_view_of_y(a):
    y = _sentinel(a["x"].shape)
    a["kw"]["out"] = (y, y.reshape(-1)[4:7], None)


FORWARD_ERRORS = [
    # --- TypeError: not arrays, dtypes
    ("x-list", TypeError, "x", _set(x=lambda a: a["x"].tolist())),
    ("x-float", TypeError, "x", _set(x=1.5)),
    ("weight-list", TypeError, "weight", _set(weight=[1.0, 1.0, 1.0])),
    ("weight-pyfloat", TypeError, "weight", _set(weight=1.0)),
    ("bias-list", TypeError, "bias", _set(bias=[0.0, 0.0, 0.0])),
    ("running_mean-list", TypeError, "running_mean", _set(running_mean=[0.0, 0.0, 0.0])),
    ("running_var-pyfloat", TypeError, "running_var", _set(running_var=1.0)),
    ("x-float16", TypeError, "x", lambda a: a.update(
        {k: a[k].astype(np.float16) for k in ("x", "weight", "bias", "running_mean", "running_var")})),
    ("x-int32", TypeError, "x", lambda a: a.update(
        {k: a[k].astype(np.int32) for k in ("x", "weight", "bias", "running_mean", "running_var")})),
    ("weight-float64", TypeError, "weight", _set(weight=lambda a: a["weight"].astype(np.float64))),
    ("bias-float64", TypeError, "bias", _set(bias=lambda a: a["bias"].astype(np.float64))),
    ("running_mean-float64", TypeError, "running_mean",
     _set(running_mean=lambda a: a["running_mean"].astype(np.float64))),
    ("running_var-float64", TypeError, "running_var",
     _set(running_var=lambda a: a["running_var"].astype(np.float64))),
    ("weight-int32", TypeError, "weight", _set(weight=lambda a: a["weight"].astype(np.int32))),
    ("out-float64", TypeError, "out", _set(out=lambda a: np.zeros(a["x"].shape, np.float64))),
    ("out-mean-float64", TypeError, "out", _set(out=(None, np.zeros(3, np.float64), None))),
    # --- ValueError: shapes / axes
    ("x-1d", ValueError, "x", lambda a: a.update(
        x=np.ones(5, np.float32), weight=None, bias=None, running_mean=None, running_var=None)),
    ("x-0d", ValueError, "x", lambda a: a.update(
        x=np.array(1.0, np.float32), weight=None, bias=None, running_mean=None, running_var=None)),
    ("channel_axis-2", ValueError, "channel_axis", _set(channel_axis=2)),
    ("channel_axis-0", ValueError, "channel_axis", _set(channel_axis=0)),
    ("channel_axis--2", ValueError, "channel_axis", _set(channel_axis=-2)),
    ("channel_axis-3", ValueError, "channel_axis", _set(channel_axis=3)),
    ("weight-len4", ValueError, "weight", _set(weight=np.ones(4, np.float32))),
    ("weight-len2", ValueError, "weight", _set(weight=np.ones(2, np.float32))),
    ("weight-0d", ValueError, "weight", _set(weight=np.array(1.0, np.float32))),
    ("bias-len4", ValueError, "bias", _set(bias=np.ones(4, np.float32))),
    ("running_mean-len4", ValueError, "running_mean", _set(running_mean=np.zeros(4, np.float32))),
    ("running_var-len2", ValueError, "running_var", _set(running_var=np.ones(2, np.float32))),
    ("channels-last-weight-len", ValueError, "weight", _set(channel_axis=-1)),  # C would be 5
    # --- ValueError: contiguity
    ("x-strided", ValueError, "x",
     _set(x=lambda a: make_x((4, 3, 10), 1, np.float32)[:, :, ::2])),
    ("x-transposed", ValueError, "x", _set(x=lambda a: make_x((3, 4), 1, np.float32).T)),
    ("weight-strided", ValueError, "weight", _set(weight=_strided(3))),
    ("running_var-strided", ValueError, "running_var", _set(running_var=_strided(3))),
    ("out-strided", ValueError, "out",
     _set(out=lambda a: np.zeros((4, 3, 10), np.float32)[:, :, ::2])),
    # --- ValueError: read-only outputs
    ("out-readonly", ValueError, "out", _set(out=lambda a: _readonly(_sentinel(a["x"].shape)))),
    ("out-mean-readonly", ValueError, "out",
     _set(out=lambda a: (_sentinel(a["x"].shape), _readonly(_sentinel(3)), None))),
    ("running_mean-readonly", ValueError, "running_mean",
     _set(running_mean=lambda a: _readonly(a["running_mean"]))),
    ("running_var-readonly", ValueError, "running_var",
     _set(running_var=lambda a: _readonly(a["running_var"]))),
    # --- ValueError: out shapes
    ("out-shape", ValueError, "out", _set(out=lambda a: _sentinel((4, 3, 6)))),
    ("out-shape-same-size", ValueError, "out", _set(out=lambda a: _sentinel((4, 15)))),
    ("out-mean-shape", ValueError, "out", _set(out=lambda a: (None, _sentinel(4), None))),
    ("out-invstd-shape", ValueError, "out", _set(out=lambda a: (None, None, _sentinel((3, 1))))),
    ("out-tuple-len2", (ValueError, TypeError), "out",
     _set(out=lambda a: (_sentinel(a["x"].shape), _sentinel(3)))),
    # --- ValueError: aliasing
    ("out-partial-overlap-x", ValueError, "out", _out_overlapping("x")),
    ("out-mean-is-running_mean", ValueError, "out",
     _set(out=lambda a: (None, a["running_mean"], None))),
    ("out-invstd-is-running_var", ValueError, "out",
     _set(out=lambda a: (None, None, a["running_var"]))),
    ("out-mean-is-weight", ValueError, "out", _set(out=lambda a: (None, a["weight"], None))),
    ("out-mean-view-of-x", ValueError, "out", _mean_view_of_x),
    ("out-mean-is-invstd", ValueError, "out", _two_stat_outs_same),
    ("out-mean-view-of-y", ValueError, "out", _mean_view_of_y),
    # --- ValueError: hyper-parameters
    ("eps-0", ValueError, "eps", _set(eps=0.0)),
    ("eps-negative", ValueError, "eps", _set(eps=-1e-5)),
    ("eps-nan", ValueError, "eps", _set(eps=float("nan"))),
    ("momentum-negative", ValueError, "momentum", _set(momentum=-0.1)),
    ("momentum-above-1", ValueError, "momentum", _set(momentum=1.5)),
    ("momentum-nan", ValueError, "momentum", _set(momentum=float("nan"))),
    # --- ValueError: mode / running stats
    ("eval-no-running", ValueError, "running_mean",
     _set(training=False, running_mean=None, running_var=None)),
    ("eval-no-running_var", ValueError, "running_var", _set(training=False, running_var=None)),
    ("train-running_mean-without-var", ValueError, "running_var", _set(running_var=None)),
    ("train-running_var-without-mean", ValueError, "running_mean", _set(running_mean=None)),
    # --- nothing written when a late check fails
    ("in-place-bad-eps", ValueError, "eps", lambda a: a["kw"].update(out=a["x"], eps=0.0)),
    ("valid-outs-bad-invstd", ValueError, "out",
     _set(out=lambda a: (_sentinel(a["x"].shape), _sentinel(3), _sentinel(2)))),
    ("valid-outs-readonly-invstd", ValueError, "out",
     _set(out=lambda a: (_sentinel(a["x"].shape), _sentinel(3), _readonly(_sentinel(3))))),
    ("valid-outs-bad-momentum", ValueError, "momentum",
     _set(momentum=2.0, out=lambda a: (_sentinel(a["x"].shape), _sentinel(3), _sentinel(3)))),
]


def _arrays_in(obj):
    if isinstance(obj, np.ndarray):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for o in obj:
            yield from _arrays_in(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _arrays_in(o)


def _snapshot(args):
    return [(arr, arr.copy()) for arr in _arrays_in(args)]


def _assert_untouched(snap):
    for arr, before in snap:
        assert np.array_equal(arr, before, equal_nan=arr.dtype.kind == "f"), "an array was written"


@pytest.mark.parametrize("case", FORWARD_ERRORS, ids=[c[0] for c in FORWARD_ERRORS])
def test_forward_errors(case):
    _, exc, name, mod = case
    a = _base_forward_args()
    mod(a)
    snap = _snapshot(a)
    kw = a["kw"]
    raises_naming(exc, name, F.batch_norm_forward, a["x"], a["weight"], a["bias"],
                  a["running_mean"], a["running_var"], **kw)
    _assert_untouched(snap)


@pytest.mark.parametrize("shape,axis", [((1, 3), 1), ((1, 3), -1), ((1, 3, 1, 1), 1),
                                        ((1, 1, 1, 3), -1), ((1, 4, 1), 1)])
@pytest.mark.parametrize("running", [True, False], ids=["running", "norunning"])
def test_training_one_value_per_channel(shape, axis, running):
    C = shape[axis]
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    rm, rv = (np.zeros(C, np.float32), np.ones(C, np.float32)) if running else (None, None)
    snap = _snapshot([x, rm, rv])
    with pytest.raises(ValueError, match="more than 1 value per channel") as info:
        fwd(x, None, None, rm, rv, training=True, channel_axis=axis)
    assert re.search(r"(?<![A-Za-z0-9_])x(?![A-Za-z0-9_])", str(info.value)), str(info.value)
    _assert_untouched(snap)


def test_forward_error_numpy_scalar_weight():
    a = _base_forward_args()
    raises_naming(TypeError, "weight", F.batch_norm_forward, a["x"], np.float32(1.0), a["bias"],
                  a["running_mean"], a["running_var"])


def test_forward_float64_accepts_float64_everything():
    # the mirror image of the mixed-dtype errors: one dtype throughout is fine
    a = _base_forward_args(np.float64)
    out = F.batch_norm_forward(a["x"], a["weight"], a["bias"], a["running_mean"],
                               a["running_var"], **a["kw"])
    assert out.y.dtype == np.float64 and out.mean.dtype == np.float64


def _base_backward_args(dtype=np.float32):
    shape = (4, 3, 5)
    x = make_x(shape, 1, dtype, seed=92)
    dy = np.random.default_rng(93).standard_normal(shape).astype(dtype)
    w = make_params(3, dtype)[0]
    f = fwd(x, w)
    return dict(dy=dy, x=x, weight=w, mean=f.mean, invstd=f.invstd,
                kw=dict(training=True, channel_axis=1))


def _dx_and_dw_overlap(a):
    dx = _sentinel(a["x"].shape)
    a["kw"]["out"] = (dx, dx.reshape(-1)[:3], None)


BACKWARD_ERRORS = [
    ("dy-list", TypeError, "dy", _set(dy=lambda a: a["dy"].tolist())),
    ("x-list", TypeError, "x", _set(x=lambda a: a["x"].tolist())),
    ("weight-list", TypeError, "weight", _set(weight=[1.0, 1.0, 1.0])),
    ("mean-list", TypeError, "mean", _set(mean=[0.0, 0.0, 0.0])),
    ("invstd-pyfloat", TypeError, "invstd", _set(invstd=1.0)),
    ("float16", TypeError, ("dy", "x"), lambda a: a.update(
        {k: a[k].astype(np.float16) for k in ("dy", "x", "weight", "mean", "invstd")})),
    ("int32", TypeError, ("dy", "x"), lambda a: a.update(
        {k: a[k].astype(np.int32) for k in ("dy", "x", "weight", "mean", "invstd")})),
    ("dy-float64", TypeError, ("dy", "x"), _set(dy=lambda a: a["dy"].astype(np.float64))),
    ("weight-float64", TypeError, "weight", _set(weight=lambda a: a["weight"].astype(np.float64))),
    ("mean-float64", TypeError, "mean", _set(mean=lambda a: a["mean"].astype(np.float64))),
    ("invstd-float64", TypeError, "invstd", _set(invstd=lambda a: a["invstd"].astype(np.float64))),
    ("out-float64", TypeError, "out", _set(out=lambda a: np.zeros(a["x"].shape, np.float64))),
    ("dy-shape", ValueError, "dy", _set(dy=lambda a: _sentinel((4, 3, 6)))),
    ("x-1d", ValueError, ("x", "dy"), lambda a: a.update(
        dy=np.ones(5, np.float32), x=np.ones(5, np.float32), weight=None,
        mean=np.zeros(5, np.float32), invstd=np.ones(5, np.float32))),
    ("channel_axis-2", ValueError, "channel_axis", _set(channel_axis=2)),
    ("channel_axis-0", ValueError, "channel_axis", _set(channel_axis=0)),
    ("weight-len4", ValueError, "weight", _set(weight=np.ones(4, np.float32))),
    ("mean-len4", ValueError, "mean", _set(mean=np.zeros(4, np.float32))),
    ("invstd-len2", ValueError, "invstd", _set(invstd=np.ones(2, np.float32))),
    ("dy-strided", ValueError, "dy", _set(dy=lambda a: _sentinel((4, 3, 10))[:, :, ::2])),
    ("x-strided", ValueError, "x", _set(x=lambda a: make_x((4, 3, 10), 1, np.float32)[:, :, ::2])),
    ("weight-strided", ValueError, "weight", _set(weight=_strided(3))),
    ("mean-strided", ValueError, "mean", _set(mean=_strided(3))),
    ("out-readonly", ValueError, "out", _set(out=lambda a: _readonly(_sentinel(a["x"].shape)))),
    ("out-dweight-readonly", ValueError, "out", _set(out=lambda a: (None, _readonly(_sentinel(3)), None))),
    ("out-shape", ValueError, "out", _set(out=lambda a: _sentinel((4, 3, 6)))),
    ("out-dweight-shape", ValueError, "out", _set(out=lambda a: (None, _sentinel(4), None))),
    ("out-dbias-shape", ValueError, "out", _set(out=lambda a: (None, None, _sentinel((1, 3))))),
    ("out-strided", ValueError, "out", _set(out=lambda a: _sentinel((4, 3, 10))[:, :, ::2])),
    ("out-tuple-len2", (ValueError, TypeError), "out",
     _set(out=lambda a: (_sentinel(a["x"].shape), _sentinel(3)))),
    ("out-partial-overlap-dy", ValueError, "out", _out_overlapping("dy")),
    ("out-partial-overlap-x", ValueError, "out", _out_overlapping("x", shift=2)),
    ("out-dweight-is-weight", ValueError, "out", _set(out=lambda a: (None, a["weight"], None))),
    ("out-dweight-is-mean", ValueError, "out", _set(out=lambda a: (None, a["mean"], None))),
    ("out-dbias-is-invstd", ValueError, "out", _set(out=lambda a: (None, None, a["invstd"]))),
    ("out-dweight-is-dbias", ValueError, "out", _two_stat_outs_same),
    ("out-dweight-view-of-dx", ValueError, "out", _dx_and_dw_overlap),
    ("valid-outs-bad-dbias", ValueError, "out",
     _set(out=lambda a: (_sentinel(a["x"].shape), _sentinel(3), _sentinel(4)))),
    ("in-place-dy-bad-axis", ValueError, "channel_axis",
     lambda a: a["kw"].update(out=a["dy"], channel_axis=2)),
    ("in-place-x-bad-weight", ValueError, "weight",
     lambda a: (a["kw"].update(out=a["x"]), a.update(weight=np.ones(4, np.float32)))),
]


@pytest.mark.parametrize("case", BACKWARD_ERRORS, ids=[c[0] for c in BACKWARD_ERRORS])
def test_backward_errors(case):
    _, exc, name, mod = case
    a = _base_backward_args()
    mod(a)
    snap = _snapshot(a)
    raises_naming(exc, name, F.batch_norm_backward, a["dy"], a["x"], a["weight"], a["mean"],
                  a["invstd"], **a["kw"])
    _assert_untouched(snap)


def test_backward_weight_none_computes_grads():
    a = _base_backward_args(np.float64)
    dx, dw, db = F.batch_norm_backward(a["dy"], a["x"], None, a["mean"], a["invstd"])
    _, mean64, invstd64, _, _ = ref_forward(a["x"], None, None, None, None, True, 0.1, 1e-5, 1)
    dx_ref, dw_ref, db_ref = ref_backward(a["dy"], a["x"], None, mean64, invstd64, True, 1)
    assert_close(dx, dx_ref, scale_tol=1e-12, name="dx")
    assert_close(dw, dw_ref, scale_tol=1e-12, name="dweight")
    assert_close(db, db_ref, scale_tol=1e-12, name="dbias")


# =========================================================================== torch comparisons


def _to_nc(a, axis):
    """channels-last -> channels-first copy (torch wants channels at dim 1)."""
    if axis == -1 and a.ndim > 2:
        return np.ascontiguousarray(np.moveaxis(a, -1, 1))
    return a


def _from_nc(a, axis):
    if axis == -1 and a.ndim > 2:
        return np.ascontiguousarray(np.moveaxis(a, 1, -1))
    return a


TORCH_LAYOUTS = [((8, 3, 5, 5), 1), ((16, 6), 1), ((4, 5, 5, 3), -1), ((6, 4, 9), 1),
                 ((3, 4, 2, 3, 5), 1), ((10, 7, 6), -1)]


@pytest.mark.parametrize("layout", TORCH_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_running_stats_over_steps_vs_torch(torch, dtype, layout):
    shape, axis = layout
    C = shape[axis]
    w, b, rm, rv = make_params(C, dtype, seed=101)
    rm_t = torch.from_numpy(rm.copy())
    rv_t = torch.from_numpy(rv.copy())
    w_t, b_t = torch.from_numpy(w.copy()), torch.from_numpy(b.copy())
    tol_y = SCALE_TOL[dtype]
    tol_s = 1e-5 if dtype == np.float32 else 1e-12
    for step, momentum in enumerate([0.1, 0.1, 0.3, 0.1, 0.9]):
        x = make_x(shape, axis, dtype, seed=200 + step)
        out = fwd(x, w, b, rm, rv, training=True, momentum=momentum, channel_axis=axis)
        y_t = torch.nn.functional.batch_norm(
            torch.from_numpy(_to_nc(x, axis).copy()), rm_t, rv_t, w_t, b_t,
            training=True, momentum=momentum, eps=1e-5)
        assert_close(out.y, _from_nc(y_t.numpy(), axis), scale_tol=tol_y, name=f"y step {step}")
        assert_close(rm, rm_t.numpy(), rtol=tol_s, atol=tol_s, name=f"running_mean step {step}")
        assert_close(rv, rv_t.numpy(), rtol=tol_s, name=f"running_var step {step}")
    # eval with the accumulated running stats
    x = make_x(shape, axis, dtype, seed=300)
    out = fwd(x, w, b, rm, rv, training=False, channel_axis=axis)
    y_t = torch.nn.functional.batch_norm(
        torch.from_numpy(_to_nc(x, axis).copy()), rm_t, rv_t, w_t, b_t, training=False, eps=1e-5)
    assert_close(out.y, _from_nc(y_t.numpy(), axis), scale_tol=tol_y, name="y eval")


@pytest.mark.parametrize("layout", TORCH_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_saved_stats_vs_torch(torch, dtype, layout):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=111)
    w, b, rm, rv = make_params(C, dtype, seed=112)
    out = fwd(x, w, b, rm.copy(), rv.copy(), training=True, eps=1e-3, channel_axis=axis)
    y_t, mean_t, invstd_t = torch.native_batch_norm(
        torch.from_numpy(_to_nc(x, axis).copy()), torch.from_numpy(w.copy()),
        torch.from_numpy(b.copy()), torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()),
        True, 0.1, 1e-3)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert_close(out.y, _from_nc(y_t.numpy(), axis), scale_tol=SCALE_TOL[dtype], name="y")
    assert_close(out.mean, mean_t.numpy(), rtol=tol, atol=tol, name="mean")
    assert_close(out.invstd, invstd_t.numpy(), rtol=tol, name="invstd")


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("affine", [True, False], ids=["affine", "noaffine"])
@pytest.mark.parametrize("layout", TORCH_LAYOUTS, ids=layout_id)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
def test_backward_vs_torch_autograd(torch, dtype, layout, affine, training):
    shape, axis = layout
    C = shape[axis]
    x = make_x(shape, axis, dtype, seed=121)
    dy = np.random.default_rng(122).standard_normal(shape).astype(dtype)
    w, b, rm, rv = make_params(C, dtype, seed=123)
    if not affine:
        w = b = None
    out = fwd(x, w, b, rm.copy(), rv.copy(), training=training, channel_axis=axis)
    dx, dw, db = F.batch_norm_backward(dy, x, w, out.mean, out.invstd, training=training,
                                       channel_axis=axis)

    x_t = torch.from_numpy(_to_nc(x, axis).copy()).requires_grad_(True)
    w_np = np.ones(C, dtype) if w is None else w
    b_np = np.zeros(C, dtype) if b is None else b
    w_t = torch.from_numpy(w_np.copy()).requires_grad_(True)
    b_t = torch.from_numpy(b_np.copy()).requires_grad_(True)
    y_t = torch.nn.functional.batch_norm(
        x_t, torch.from_numpy(rm.copy()), torch.from_numpy(rv.copy()), w_t, b_t,
        training=training, momentum=0.1, eps=1e-5)
    y_t.backward(torch.from_numpy(_to_nc(dy, axis).copy()))
    tol = SCALE_TOL[dtype] if dtype == np.float32 else 1e-11
    assert_close(out.y, _from_nc(y_t.detach().numpy(), axis), scale_tol=tol, name="y")
    assert_close(dx, _from_nc(x_t.grad.numpy(), axis), scale_tol=tol, name="dx")
    assert_close(dw, w_t.grad.numpy(), scale_tol=tol, name="dweight")
    assert_close(db, b_t.grad.numpy(), scale_tol=tol, name="dbias")


# =========================================================================== 64-bit indexing


@pytest.mark.bigmem
def test_more_than_2_31_elements():
    """Training and eval forward in place over more than 2**31 elements (about 8.6 GB)."""
    if os.environ.get("FASTNN_BIGMEM") != "1":
        pytest.skip("set FASTNN_BIGMEM=1 to run")
    try:
        with open("/proc/meminfo") as fh:
            avail_kb = next(int(l.split()[1]) for l in fh if l.startswith("MemAvailable"))
    except (OSError, StopIteration):
        pytest.skip("cannot read MemAvailable")
    C = 4
    M = (2**31 + 64) // C  # values per channel
    if avail_kb * 1024 < 1.5 * M * C * 4:
        pytest.skip("not enough memory")
    v = np.array([5.0, 6.0, 7.0, 8.0])
    x = np.ones((M, C), np.float32)
    x[-1] = v

    # training: every channel is M-1 ones and one v
    rm, rv = np.zeros(C, np.float32), np.ones(C, np.float32)
    out = fwd(x, None, None, rm, rv, training=True, momentum=1.0, channel_axis=1, out=x)
    assert out.y is x
    mean = 1.0 + (v - 1.0) / M
    var = ((M - 1) * (mean - 1.0) ** 2 + (v - mean) ** 2) / M
    invstd = 1.0 / np.sqrt(var + 1e-5)
    assert_close(out.mean, mean, rtol=1e-6, name="mean")
    assert_close(out.invstd, invstd, rtol=1e-5, name="invstd")
    assert_close(rv, var * M / (M - 1), rtol=1e-5, name="running_var")
    assert_close(x[-1], (v - mean) * invstd, rtol=1e-5, name="y last row")
    assert_close(x[M // 2], (1.0 - mean) * invstd, rtol=1e-3, atol=1e-9, name="y middle row")

    # eval
    x[...] = 1.0
    x[-1] = v
    rm = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
    rv = np.array([4.0, 1.0, 1.0, 1.0], np.float32) - np.float32(1e-5)
    out = fwd(x, None, None, rm, rv, training=False, channel_axis=1, out=x)
    assert out.y is x
    assert x[0, 0] == 0.0
    assert abs(x[-1, 0] - 2.0) < 1e-5 and abs(x[-1, 3] - 8.0) < 1e-4
    assert abs(x[M // 2, 1] - 1.0) < 1e-5 and x[M // 2, 0] == 0.0
