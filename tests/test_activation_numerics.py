"""Signed zeros and accuracy in ulps of the activations (fastnn.functional, forward and
backward), against references written here: float64 NumPy formulas for float32 (accurate
to far below a float32 ulp) and mpmath at 40 digits for float64.

The float32 sweep takes every STEP-th float32 with 2**-20 <= |x| <= 128 (both signs;
set FASTNN_ULP_STEP=1 for every one, about 4.5e8 values per function: minutes) and every
9973rd float32 below; the float64 one log-spaced values over [1e-30, 800] of both signs and
dense ones over [-3, 0], where the derivatives have their roots and the tails cancel.
"""

import math
import os

import numpy as np
import pytest

from fastnn import functional as F

mpmath = pytest.importorskip("mpmath")

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946
C_TANH = math.sqrt(2 / math.pi)
STEP = int(os.environ.get("FASTNN_ULP_STEP", "601"))

# name -> (forward, backward, params, kind); kind selects the reference.
OPS = {
    "relu": (F.relu, F.relu_backward, ()),
    "leaky_relu": (F.leaky_relu, F.leaky_relu_backward, (0.2,)),
    "elu": (F.elu, F.elu_backward, (1.3,)),
    "elu_neg_alpha": (F.elu, F.elu_backward, (-0.5,)),
    "selu": (F.selu, F.selu_backward, ()),
    "gelu": (F.gelu, F.gelu_backward, ("none",)),
    "gelu_tanh": (F.gelu, F.gelu_backward, ("tanh",)),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, ()),
    "tanh": (F.tanh, F.tanh_backward, ()),
    "silu": (F.silu, F.silu_backward, ()),
    "softplus": (F.softplus, F.softplus_backward, (1.0, 20.0)),
    "softplus_beta2": (F.softplus, F.softplus_backward, (2.0, 20.0)),
    "softplus_beta2.5": (F.softplus, F.softplus_backward, (2.5, 7.0)),
    "softplus_beta0.3": (F.softplus, F.softplus_backward, (0.3, 20.0)),
}
NAMES = list(OPS)

# The largest error in ulps, (float32 forward, float32 backward, float64 forward,
# float64 backward), the bound the README states. Results below the smallest normal
# number are measured absolutely instead (flushed to zero: within it).
BOUND = {name: (4, 4, 4, 4) for name in NAMES}
BOUND["gelu_tanh"] = (170, 170, 1000, 1000)


def _param(dtype, value):
    """A hyper-parameter as the kernel sees it: rounded to the dtype."""
    return float(np.dtype(dtype).type(value))


# =========================================================================== references


def _expit(z):
    return np.exp(-np.logaddexp(0.0, -z))


_erfc = np.frompyfunc(math.erfc, 1, 1)


def _phi_cdf(x):
    return 0.5 * np.asarray(_erfc(-x / math.sqrt(2)), dtype=np.float64)


def ref64(name, x, dtype):
    """(f(x), f'(x)) in float64 NumPy, parameters as the dtype holds them."""
    _, _, params = OPS[name]
    with np.errstate(all="ignore"):
        if name == "relu":
            return np.where(x > 0, x, 0.0), np.where(x > 0, 1.0, 0.0)
        if name == "leaky_relu":
            s = _param(dtype, params[0])
            return np.where(x > 0, x, s * x), np.where(x > 0, 1.0, s)
        if name.startswith("elu") or name == "selu":
            a, sc = (SELU_ALPHA, SELU_SCALE) if name == "selu" else (_param(dtype, params[0]), 1.0)
            neg = np.minimum(x, 0)
            return (sc * np.where(x > 0, x, a * np.expm1(neg)),
                    sc * np.where(x > 0, 1.0, a * np.exp(neg)))
        if name == "gelu":
            p = _phi_cdf(x)
            return x * p, p + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
        if name == "gelu_tanh":
            z2 = 2 * C_TANH * (x + 0.044715 * x**3)
            dz2 = 2 * C_TANH * (1 + 3 * 0.044715 * x * x)
            s = _expit(z2)
            return x * s, s + x * np.exp(-np.logaddexp(0, z2) - np.logaddexp(0, -z2)) * dz2
        if name == "sigmoid":
            return _expit(x), np.exp(-np.logaddexp(0, x) - np.logaddexp(0, -x))
        if name == "tanh":
            return np.tanh(x), np.cosh(x) ** -2.0
        if name == "silu":
            return x * _expit(x), _expit(x) * (1 + x * _expit(-x))
        if name.startswith("softplus"):
            b, t = _param(dtype, params[0]), _param(dtype, params[1])
            big = np.float64(np.asarray(x, dtype) * np.dtype(dtype).type(b)) > t  # as the kernel tests it
            return (np.where(big, x, np.logaddexp(0.0, b * x) / b),
                    np.where(big, 1.0, _expit(b * x)))
    raise KeyError(name)


def ref_mp(name, x, dtype=np.float64):
    """(f(x), f'(x)) by mpmath at 40 digits, for float64 x."""
    _, _, params = OPS[name]
    mp = mpmath.mp
    out = np.empty((2, x.size))
    sig = lambda z: 1 / (1 + mpmath.exp(-z))
    with mpmath.workdps(40):
        c1 = 2 * mpmath.sqrt(2 / mpmath.pi)
        k = mpmath.mpf("0.044715")
        for i, v in enumerate(x.tolist()):
            t = mp.mpf(v)
            if name == "relu":
                f, d = (t, 1) if t > 0 else (0, 0)
            elif name == "leaky_relu":
                s = mp.mpf(_param(dtype, params[0]))
                f, d = (t, 1) if t > 0 else (s * t, s)
            elif name.startswith("elu") or name == "selu":
                if name == "selu":
                    a, sc = mp.mpf(SELU_ALPHA), mp.mpf(SELU_SCALE)
                else:
                    a, sc = mp.mpf(_param(dtype, params[0])), 1
                f, d = (sc * t, sc) if t > 0 else (sc * a * mpmath.expm1(t), sc * a * mpmath.exp(t))
            elif name == "gelu":
                f, d = t * mpmath.ncdf(t), mpmath.ncdf(t) + t * mpmath.npdf(t)
            elif name == "gelu_tanh":
                z2 = c1 * (t + k * t**3)
                f = t * sig(z2)
                d = sig(z2) + t * sig(z2) * sig(-z2) * c1 * (1 + 3 * k * t * t)
            elif name == "sigmoid":
                f, d = sig(t), sig(t) * sig(-t)
            elif name == "tanh":
                f, d = mpmath.tanh(t), mpmath.sech(t) ** 2
            elif name == "silu":
                f, d = t * sig(t), sig(t) * (1 + t * sig(-t))
            else:  # softplus
                b, th = mp.mpf(_param(dtype, params[0])), _param(dtype, params[1])
                if v * float(b) > th:
                    f, d = t, 1
                else:
                    f, d = mpmath.log1p(mpmath.exp(b * t)) / b, sig(b * t)
            out[0, i], out[1, i] = float(f), float(d)
    return out[0], out[1]


def ulps(got, ref, dtype):
    """|got - ref| in ulps of ref in dtype, for references of normal size (0 elsewhere),
    and the largest absolute error where the reference is below the smallest normal."""
    fi = np.finfo(dtype)
    got = got.astype(np.float64)
    big = float(fi.max) * (1 + 2.0 ** -(fi.nmant + 2))  # rounds to inf in dtype
    ref = np.where(np.abs(ref) >= big, np.copysign(np.inf, ref), ref)
    normal = np.isfinite(ref) & (np.abs(ref) >= fi.tiny)
    _, e = np.frexp(np.abs(np.where(normal, ref, 1.0)))
    with np.errstate(all="ignore"):
        u = np.where(normal, np.abs(got - ref) / np.ldexp(1.0, e - 1 - fi.nmant), 0.0)
    infinite = ~np.isfinite(ref)
    assert np.array_equal(got[infinite], ref[infinite], equal_nan=True), "inf or NaN mismatch"
    tiny = np.isfinite(ref) & ~normal
    abs_tiny = float(np.max(np.abs(got[tiny] - ref[tiny]))) if tiny.any() else 0.0
    return u, abs_tiny


def float32_grid(step):
    """Every step-th float32 of 2**-20 <= |x| <= 128 and every 9973rd below, both signs."""
    lo, hi = (np.array(v, np.float32).view(np.uint32) for v in (2.0**-20, 128.0))
    mags = np.concatenate([np.arange(1, int(lo), 9973, dtype=np.uint32),
                           np.arange(int(lo), int(hi) + 1, step, dtype=np.uint32)]).view(np.float32)
    return np.concatenate([mags, -mags])


def float64_grid():
    rng = np.random.default_rng(12)
    g = np.geomspace(1e-30, 800, 1200) * (1 + rng.uniform(-1e-3, 1e-3, 1200))
    dense = np.linspace(-3, 0, 1500) + rng.uniform(-1e-4, 1e-4, 1500)
    return np.concatenate([g, -g, dense])


# =========================================================================== accuracy


@pytest.mark.parametrize("name", NAMES)
def test_float32_within_bound(name):
    fwd, bwd, params = OPS[name]
    b_fwd, b_bwd = BOUND[name][:2]
    x_all = float32_grid(STEP)
    worst = [0.0, 0.0]
    for x in np.array_split(x_all, max(1, x_all.size // 2_000_000)):
        f, d = ref64(name, x.astype(np.float64), np.float32)
        for j, (got, ref) in enumerate(((fwd(x, *params), f), (bwd(np.ones_like(x), x, *params), d))):
            u, abs_tiny = ulps(got, ref, np.float32)
            assert abs_tiny <= np.finfo(np.float32).tiny, f"{name}: denormal result off by {abs_tiny}"
            i = int(np.argmax(u))
            worst[j] = max(worst[j], u[i])
            assert u[i] <= (b_fwd, b_bwd)[j], (
                f"{name} {('forward', 'backward')[j]}: {u[i]:.2f} ulp at x={x[i]!r} "
                f"(got {got[i]!r}, reference {ref[i]!r})")
    assert worst[0] <= b_fwd and worst[1] <= b_bwd


@pytest.mark.parametrize("name", NAMES)
def test_float64_within_bound(name):
    fwd, bwd, params = OPS[name]
    x = float64_grid()
    f, d = ref_mp(name, x)
    for j, (got, ref) in enumerate(((fwd(x, *params), f), (bwd(np.ones_like(x), x, *params), d))):
        u, abs_tiny = ulps(got, ref, np.float64)
        assert abs_tiny <= np.finfo(np.float64).tiny, f"{name}: denormal result off by {abs_tiny}"
        i = int(np.argmax(u))
        bound = BOUND[name][2 + j]
        assert u[i] <= bound, (f"{name} {('forward', 'backward')[j]}: {u[i]:.2f} ulp at x={x[i]!r} "
                               f"(got {got[i]!r}, reference {ref[i]!r})")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bounds_are_tight_where_the_tails_were(dtype):
    """The tails the earlier kernels lost, at the points where they were worst: float32
    gelu near -12, tanh near 0.06, elu' and sigmoid' where exp underflowed, silu near
    its underflow; float64 gelu' next to its root."""
    pts = {np.float32: {"gelu": [-12.33, -11.58, -13.1], "tanh": [0.0624, -0.0625, 0.1],
                        "elu": [-87.34, -87.5, -0.1], "sigmoid": [87.335, -87.335, 2.64],
                        "silu": [-90.45, -88.34, -1.31], "softplus": [-87.34, -3.46]},
           np.float64: {"gelu": [-0.7499227398, -0.7516887161, -1.41], "silu": [-1.2747],
                        "gelu_tanh": [-0.75, -0.7499]}}[dtype]
    for name, xs in pts.items():
        fwd, bwd, params = OPS[name]
        x = np.array(xs, dtype)
        f, d = (ref64(name, x.astype(np.float64), dtype) if dtype == np.float32 else ref_mp(name, x))
        for got, ref in ((fwd(x, *params), f), (bwd(np.ones_like(x), x, *params), d)):
            u, _ = ulps(got, ref, dtype)
            assert np.all(u <= 4), (name, x, u)


# =========================================================================== signed zero


def _sign_eq(got, expected):
    got, expected = np.asarray(got), np.asarray(expected, dtype=got.dtype)
    return np.array_equal(got, expected) and np.array_equal(np.signbit(got), np.signbit(expected))


def _expected_zeros(name, dtype):
    """(x, f(x), dx for dy = 1, dx for dy = -1) at the points where a zero's sign is
    decided: x = +-0, and the tails where f or f' underflows to a zero of the exact
    value's sign."""
    z, nz = 0.0, -0.0
    if dtype == np.float32:
        deep = {"gelu": -50.0, "gelu_tanh": -30.0, "silu": -200.0, "elu": -200.0,
                "sigmoid": -200.0, "tanh": 200.0}
    else:
        deep = {"gelu": -50.0, "gelu_tanh": -40.0, "silu": -1000.0, "elu": -1000.0,
                "sigmoid": -1000.0, "tanh": 1000.0}
    rows = {  # name: [(x, f, f'), ...]
        "relu": [(z, z, z), (nz, nz, z), (-1.0, z, z)],
        "leaky_relu": [(z, z, 0.2), (nz, nz, 0.2)],
        "elu": [(z, z, 1.3), (nz, nz, 1.3), (deep["elu"], -1.3, z)],
        "elu_neg_alpha": [(z, z, -0.5), (nz, nz, -0.5), (deep["elu"], 0.5, nz)],
        "selu": [(z, z, SELU_SCALE * SELU_ALPHA), (nz, nz, SELU_SCALE * SELU_ALPHA)],
        "gelu": [(z, z, 0.5), (nz, nz, 0.5), (deep["gelu"], nz, nz)],
        "gelu_tanh": [(z, z, 0.5), (nz, nz, 0.5), (deep["gelu_tanh"], nz, nz)],
        "sigmoid": [(z, 0.5, 0.25), (nz, 0.5, 0.25), (deep["sigmoid"], z, z)],
        "tanh": [(z, z, 1.0), (nz, nz, 1.0), (deep["tanh"], 1.0, z), (-deep["tanh"], -1.0, z)],
        "silu": [(z, z, 0.5), (nz, nz, 0.5), (deep["silu"], nz, nz)],
        "softplus": [(z, math.log(2), 0.5), (nz, math.log(2), 0.5), (-1000.0, z, z)],
    }
    out = []
    for x, f, d in rows[name]:
        f, d = np.dtype(dtype).type(f), np.dtype(dtype).type(d)
        out.append((x, f, d * np.dtype(dtype).type(1), d * np.dtype(dtype).type(-1)))
    return out


SIGNED = ["relu", "leaky_relu", "elu", "elu_neg_alpha", "selu", "gelu", "gelu_tanh", "sigmoid",
          "tanh", "silu", "softplus"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", SIGNED)
def test_signed_zero_rule_every_level(name, dtype, simd_levels, simd_level):
    """f(-0) = -0 and f(+0) = +0 where f(0) = 0; a negative result too small for the
    format is -0; relu gives +0 below 0; the backward is the product dy * f'(x), f'
    signed the same way. Each value sits in a vector of 16 and in the scalar tail."""
    fwd, bwd, params = OPS[name]
    rows = _expected_zeros(name, dtype)
    for level in simd_levels:
        for pad in (0, 16):  # the value in the scalar tail, then inside a vector
            with simd_level(level):
                for x0, f, d_pos, d_neg in rows:
                    x = np.full(pad + 1, x0, dtype)
                    y = fwd(x, *params)
                    assert _sign_eq(y, np.full_like(y, f)), (level, name, x0, y[-1])
                    for dy0, d in ((1.0, d_pos), (-1.0, d_neg)):
                        dx = bwd(np.full_like(x, dy0), x, *params)
                        assert _sign_eq(dx, np.full_like(dx, d)), (level, name, x0, dy0, dx[-1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_leaky_relu_and_prelu_negative_slope_flip_the_zero(dtype):
    """slope * x for x <= 0, as written (and as PyTorch): a negative slope gives +0 at
    -0 and -0 at +0."""
    x = np.array([0.0, -0.0], dtype)
    assert _sign_eq(F.leaky_relu(x, -0.5), np.array([-0.0, 0.0], dtype))
    assert _sign_eq(F.prelu(x, np.array([-0.5], dtype)), np.array([-0.0, 0.0], dtype))
    assert _sign_eq(F.prelu(x, np.array([0.5], dtype)), np.array([0.0, -0.0], dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_signed_zeros_vs_torch(torch, dtype):
    """Forward at +-0 and in the underflowing tails, backward at +-0 (dy = +-1): the
    same signs as PyTorch (its relu backward gives +0 whatever dy, not dy * 0: left
    out). The forward's reference is PyTorch in float64, rounded to dtype: its float32
    erf GELU gives +0 at -0 and in the tail on CPUs without AVX-512 and -0 with it."""
    tf = torch.nn.functional
    tops = {
        "relu": tf.relu, "leaky_relu": lambda t: tf.leaky_relu(t, 0.2),
        "elu": lambda t: tf.elu(t, 1.3), "elu_neg_alpha": lambda t: tf.elu(t, -0.5),
        "selu": tf.selu, "gelu": tf.gelu, "gelu_tanh": lambda t: tf.gelu(t, approximate="tanh"),
        "sigmoid": torch.sigmoid, "tanh": torch.tanh, "silu": tf.silu, "softplus": tf.softplus,
    }
    x = np.array([0.0, -0.0, -45.0, -1000.0], dtype)
    for name, top in tops.items():
        fwd, bwd, params = OPS[name]
        yt, y = top(torch.from_numpy(x.astype(np.float64))).numpy().astype(dtype), fwd(x, *params)
        assert np.array_equal(np.signbit(y), np.signbit(yt)) and np.array_equal(y == 0, yt == 0), name
        if name == "relu":
            continue
        for dy0 in (1.0, -1.0):
            t = torch.from_numpy(x[:2].copy()).requires_grad_()
            top(t).backward(torch.full((2,), dy0, dtype=t.dtype))
            assert _sign_eq(bwd(np.full(2, dy0, dtype), x[:2], *params), t.grad.numpy()), (name, dy0)


@pytest.mark.parametrize("dtype,alpha", [(np.float32, a) for a in (1e-30, 0.5, 3.0, 1e30, -1e30)]
                         + [(np.float64, a) for a in (1e-300, 0.5, 3.0, 1e300, -1e300)])
def test_elu_gradient_with_extreme_alpha_stays_finite(dtype, alpha):
    """f'(x) = alpha exp(x) below 0: a huge alpha must not overflow inside the kernel
    (the exp comes scaled by a power of 2), a tiny one must not underflow early."""
    x = np.array([-0.0, -1e-3, -1.0, -20.0, -60.0], dtype)
    dy = np.ones_like(x)
    want = np.float64(dtype(alpha)) * np.exp(x.astype(np.float64))
    tiny = np.finfo(dtype).tiny
    want[np.abs(want) < tiny] = 0  # below the smallest normal: flushed
    got = F.elu_backward(dy, x, alpha=alpha)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=8 * np.finfo(dtype).eps, atol=tiny)
