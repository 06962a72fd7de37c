"""Fuzzing every function of fastnn.F over its argument space (hypothesis).

Each example builds a valid call (dtype, shapes, layouts channels-first or -last, out=
arrays or None), then changes up to three of its arguments into something else: another
dtype (float16, ints, bool, complex, a non-native byte order), a strided, Fortran-order,
unaligned, masked, read-only, reshaped, empty or 0-d array, a list, None, a Parameter, an
out= array of the wrong kind or aliasing another argument (exactly or in part), and for
hyper-parameters NaN, inf, negative, huge, strings, bools and NumPy scalars.

The rules a call must follow are written out here, independently of the library (the
``check_*`` functions below): each either raises ``Refuse`` or returns what the call
must produce, from a float64 reference (or, for dropout, a Philox written here), with
the state it must leave (running statistics, the batch count, the generator). Then:

- a call the rules refuse must raise TypeError or ValueError whose message names one of
  the function's arguments, and change nothing: no input, no out= array, no running
  statistic, no generator;
- a call the rules accept must succeed, match the reference, give bitwise what the same
  call with fresh arguments (contiguous copies, no out=) gives, move the state exactly
  as the rules say and write no array but its outputs.

Derandomized: the same examples on every run (FASTNN_FUZZ_EXAMPLES sets how many per
function, FASTNN_FUZZ_RANDOM=1 draws new ones).
"""

import math
import numbers
import os
import re
from dataclasses import dataclass, field

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import fastnn  # noqa: E402
from fastnn import F  # noqa: E402
from fastnn.nn import Parameter  # noqa: E402

EXAMPLES = int(os.environ.get("FASTNN_FUZZ_EXAMPLES", "150"))
# FASTNN_FUZZ_RANDOM=1: new examples on every run (for a longer hunt; CI runs the fixed ones)
FUZZ = settings(max_examples=EXAMPLES, derandomize=os.environ.get("FASTNN_FUZZ_RANDOM") != "1", database=None,
                deadline=None, print_blob=True, suppress_health_check=list(HealthCheck))

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
LABEL_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
U64_MAX = 2**64 - 1


class Refuse(Exception):
    """The rules say this call must be refused (the message says which rule)."""


# ============================================================ the rules, written out


def plain_array(v, name, dtypes=FLOATS, optional=False, layout=True):
    """v as the kernels take it: a NumPy array (a Parameter's data) of one of `dtypes`,
    C-contiguous and aligned (layout=True); None only where optional."""
    if isinstance(v, Parameter):
        v = v.data
    if v is None:
        if optional:
            return None
        raise Refuse(f"{name} is required")
    if not isinstance(v, np.ndarray) or isinstance(v, np.ma.MaskedArray):
        raise Refuse(f"{name} is not a plain array")
    if v.dtype not in dtypes or not v.dtype.isnative:
        raise Refuse(f"{name} has dtype {v.dtype}")
    if layout and not (v.flags.c_contiguous and v.flags.aligned):
        raise Refuse(f"{name} is not C-contiguous and aligned")
    return v


def like(v, name, x, shape, optional=False):
    """An input with x's dtype and the given shape."""
    v = plain_array(v, name, optional=optional)
    if v is not None and (v.dtype != x.dtype or v.shape != tuple(shape)):
        raise Refuse(f"{name} must be {x.dtype} {tuple(shape)}, is {v.dtype} {v.shape}")
    return v


def output(v, name, dtype, shape):
    """An out= array: None, or writeable with this dtype and shape."""
    v = plain_array(v, name, dtypes=(np.dtype(dtype),), optional=True)
    if v is not None and (v.shape != tuple(shape) or not v.flags.writeable):
        raise Refuse(f"{name} must be a writeable {tuple(shape)}, is {v.shape}")
    return v


def outs(out, n):
    """out=: None, one array (the first result) or a tuple/list of n entries."""
    if out is None:
        return [None] * n
    if isinstance(out, (tuple, list)):
        if len(out) != n:
            raise Refuse(f"out has {len(out)} entries, not {n}")
        return list(out)
    return [out] + [None] * (n - 1)


def no_overlap(written, arrays, allowed=()):
    """No written array shares memory with another argument, except the exact aliases
    allowed (pairs of names)."""
    for wname, w in written.items():
        if w is None or w.size == 0:
            continue
        for oname, o in arrays.items():
            if oname == wname or o is None or o.size == 0 or not np.shares_memory(w, o):
                continue
            exact = (w.__array_interface__["data"][0] == o.__array_interface__["data"][0]
                     and w.nbytes == o.nbytes)
            if not (exact and ((wname, oname) in allowed or (oname, wname) in allowed)):
                raise Refuse(f"{wname} overlaps {oname}")


def real(v, name):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
        raise Refuse(f"{name} is not a number")
    try:
        return float(v)
    except OverflowError:
        raise Refuse(f"{name} does not fit a float") from None


def finite(v, name):
    v = real(v, name)
    if not math.isfinite(v):
        raise Refuse(f"{name} is not finite")
    return v


def unit_interval(v, name):
    v = real(v, name)
    if not 0 <= v <= 1:
        raise Refuse(f"{name} is outside [0, 1]")
    return v


def integer(v, name, lo=-(2**63), hi=2**63 - 1):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
        raise Refuse(f"{name} is not an int")
    if not lo <= int(v) <= hi:
        raise Refuse(f"{name} is out of range")
    return int(v)


def flag(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise Refuse(f"{name} is not a bool")
    return bool(v)


def channel_axis(v):
    axis = integer(v, "channel_axis")
    if axis not in (1, -1):
        raise Refuse("channel_axis must be 1 or -1")
    return axis


def default_offset(v):
    """offset left at its default: only the int 0 goes without a seed."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral) or v != 0:
        raise Refuse("offset is given without a seed")


@dataclass
class Expected:
    """What an accepted call must produce."""
    results: list                    # per result: (reference array, rtol, atol), or (array, "exact")
    state: dict = field(default_factory=dict)  # argument name -> its value after the call
    draws: tuple = None              # (generator, n): the generator moves on by ceil(n / 4)
    fresh: dict = field(default_factory=dict)  # arguments the fresh call takes instead


def tolerances(dtype, scale=1.0):
    return (2e-4, 2e-4 * scale) if dtype == np.float32 else (1e-9, 1e-9 * scale)


def channels_last(a, axis):
    """a (..., C, ...) with the channel axis moved last, as (rows, C)."""
    a = np.moveaxis(a, axis, -1)
    return a.reshape(math.prod(a.shape[:-1]), a.shape[-1])


def channels_back(m, axis, shape):
    """The inverse of channels_last for an array of `shape`."""
    moved = list(np.moveaxis(np.empty(shape, np.int8), axis, -1).shape)
    return np.moveaxis(m.reshape(moved), -1, axis)


# ------------------------------------------------------------------ activations

def _erf(x):
    return np.vectorize(math.erf, otypes=[np.float64])(x)


def _sigmoid(x):
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1 + np.exp(-np.abs(x))))


SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
K_TANH = math.sqrt(2 / math.pi)


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(K_TANH * (x + 0.044715 * x**3)))


def _gelu_tanh_grad(x):
    t = np.tanh(K_TANH * (x + 0.044715 * x**3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * K_TANH * (1 + 3 * 0.044715 * x * x)


def _softplus(x, beta, threshold):
    z = beta * x
    with np.errstate(over="ignore"):
        return np.where(z > threshold, x, (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))) / beta)


def _phi(x):
    return np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


# name -> (hyper-parameter names, rules for them, forward f(x, *h), derivative f'(x, *h))
ACTIVATIONS = {
    "relu": ((), lambda: (), lambda x: np.maximum(x, 0), lambda x: np.where(x > 0, 1.0, np.where(x <= 0, 0.0, x))),
    "leaky_relu": (("negative_slope",), lambda s: (finite(s, "negative_slope"),),
                   lambda x, s: np.where(x > 0, x, s * x), lambda x, s: np.where(x > 0, 1.0, np.where(x <= 0, s, x))),
    "elu": (("alpha",), lambda a: (finite(a, "alpha"),),
            lambda x, a: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))),
            lambda x, a: np.where(x > 0, 1.0, a * np.exp(np.minimum(x, 0)))),
    "selu": ((), lambda: (),
             lambda x: SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))),
             lambda x: SELU_SCALE * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0)))),
    "gelu": (("approximate",), lambda a: (_approximate(a),),
             lambda x, a: x * 0.5 * (1 + _erf(x / math.sqrt(2))) if a == "none" else _gelu_tanh(x),
             lambda x, a: (0.5 * (1 + _erf(x / math.sqrt(2))) + x * _phi(x)) if a == "none"
             else _gelu_tanh_grad(x)),
    "sigmoid": ((), lambda: (), _sigmoid, lambda x: _sigmoid(x) * _sigmoid(-x)),
    "tanh": ((), lambda: (), np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "silu": ((), lambda: (), lambda x: x * _sigmoid(x),
             lambda x: _sigmoid(x) * (1 + x * _sigmoid(-x))),
    "softplus": (("beta", "threshold"), lambda b, t: _softplus_params(b, t), _softplus,
                 lambda x, b, t: np.where(b * x > t, 1.0, _sigmoid(b * x))),
}


def _approximate(a):
    if not isinstance(a, str) or a not in ("none", "tanh"):
        raise Refuse("approximate must be 'none' or 'tanh'")
    return a


def _softplus_params(beta, threshold):
    beta = finite(beta, "beta")
    if not beta > 0:
        raise Refuse("beta must be > 0")
    threshold = real(threshold, "threshold")
    if math.isnan(threshold):
        raise Refuse("threshold is NaN")
    return beta, threshold


def check_activation(name, backward):
    hyper_names, hyper_rule, f, df = ACTIVATIONS[name]

    def check(a):
        x = plain_array(a["x"], "x")
        h = hyper_rule(*[a[k] for k in hyper_names])
        for k, v in zip(hyper_names, h):  # as the kernels of x's dtype see them
            if k in ("negative_slope", "alpha", "beta"):
                with np.errstate(over="ignore"):
                    rounded = x.dtype.type(v)
                if not np.isfinite(rounded) or (k == "beta" and not rounded > 0):
                    raise Refuse(f"{k} does not fit {x.dtype}")
        arrays = {"x": x}
        if backward:
            arrays["dy"] = like(a["dy"], "dy", x, x.shape)
        (out,) = outs(a["out"], 1)
        arrays["out"] = out = output(out, "out", x.dtype, x.shape)
        no_overlap({"out": out}, arrays, [("out", "x"), ("out", "dy")] if backward else [("out", "x")])
        x64 = x.astype(np.float64)
        with np.errstate(all="ignore"):
            if not backward:
                ref = f(x64, *h)
            else:  # dy * f'(x): NaN in dy or x gives NaN
                ref = arrays["dy"].astype(np.float64) * df(x64, *h)
        return Expected([(ref, *tolerances(x.dtype))])
    return check


# ------------------------------------------------------------- PReLU and Maxout

def check_prelu(backward):
    def check(a):
        x = plain_array(a["x"], "x")
        w = plain_array(a["weight"], "weight")
        if w.dtype != x.dtype:
            raise Refuse("weight and x differ in dtype")
        axis = channel_axis(a["channel_axis"])
        if w.ndim != 1:
            raise Refuse("weight must be 1-D")
        if w.shape[0] != 1:
            if x.ndim < (2 if axis == 1 else 1) or x.shape[axis] != w.shape[0]:
                raise Refuse("weight must have one slope per channel")
        arrays = {"x": x, "weight": w}
        if backward:
            arrays["dy"] = like(a["dy"], "dy", x, x.shape)
            dx, dw = outs(a["out"], 2)
            arrays["dx"] = output(dx, "out (dx)", x.dtype, x.shape)
            arrays["dweight"] = output(dw, "out (dweight)", x.dtype, w.shape)
            no_overlap({"dx": arrays["dx"], "dweight": arrays["dweight"]}, arrays, [("dx", "dy"), ("dx", "x")])
        else:
            (y,) = outs(a["out"], 1)
            arrays["y"] = output(y, "out", x.dtype, x.shape)
            no_overlap({"y": arrays["y"]}, arrays, [("y", "x")])
        x64, w64 = x.astype(np.float64), w.astype(np.float64)
        if w.shape[0] == 1 or x.ndim == 0:
            slope = w64.reshape(()) if w.shape[0] == 1 else w64
        else:
            shape = [1] * x.ndim
            shape[axis] = -1
            slope = w64.reshape(shape)
        tol = tolerances(x.dtype)
        if not backward:
            return Expected([(np.where(x64 > 0, x64, slope * x64), *tol)])
        dy64 = arrays["dy"].astype(np.float64)
        dx = np.where(x64 > 0, dy64, slope * dy64)
        terms = np.where(x64 > 0, 0.0, x64 * dy64)
        if w.shape[0] == 1:
            dweight = terms.sum().reshape(1)
        else:
            dweight = channels_last(terms, axis).sum(axis=0)
        scale = max(1.0, float(np.abs(terms).sum())) if terms.size else 1.0
        return Expected([(dx, *tol), (dweight, tol[0], tol[1] * scale)])
    return check


def _maxout_shape(x, pieces, axis):
    shape = list(x.shape)
    shape[axis] //= pieces
    return tuple(shape)


def check_maxout(backward):
    def check(a):
        x = plain_array(a["x"], "x")
        pieces = integer(a["pieces"], "pieces")
        axis = channel_axis(a["channel_axis"])
        if x.ndim < (2 if axis == 1 else 1):
            raise Refuse("x has no channel axis")
        if not 1 <= pieces <= 2**24 or x.shape[axis] % pieces:
            raise Refuse("pieces must divide the channels")
        out_shape = _maxout_shape(x, pieces, axis)
        arrays = {"x": x}
        if backward:
            arrays["dy"] = like(a["dy"], "dy", x, out_shape)
        (out,) = outs(a["out"], 1)
        arrays["out"] = output(out, "out", x.dtype, x.shape if backward else out_shape)
        no_overlap({"out": arrays["out"]}, arrays, [("out", "x")] if backward else [])
        xm = channels_last(x.astype(np.float64), axis)
        groups = xm.reshape(xm.shape[0], xm.shape[1] // pieces, pieces)
        tol = tolerances(x.dtype)
        if not backward:  # NaN wins
            return Expected([(channels_back(groups.max(axis=2), axis, out_shape), *tol)])
        winner = groups.argmax(axis=2)  # the first NaN, else the first maximum
        dym = channels_last(arrays["dy"].astype(np.float64), axis).reshape(groups.shape[:2])
        dx = np.zeros_like(groups)
        np.put_along_axis(dx, winner[..., None], dym[..., None], axis=2)
        return Expected([(channels_back(dx.reshape(xm.shape), axis, x.shape), *tol)])
    return check


# ------------------------------------------------------------------- batch norm

def _count_array(v, others):
    if v is None:
        return None
    if not isinstance(v, np.ndarray) or isinstance(v, np.ma.MaskedArray):
        raise Refuse("num_batches_tracked is not an array")
    if v.dtype != np.int64 or not v.dtype.isnative or v.shape != () or not v.flags.writeable:
        raise Refuse("num_batches_tracked must be a writeable 0-d int64 array")
    if any(o is not None and np.shares_memory(v, o) for o in others):
        raise Refuse("num_batches_tracked overlaps another array")
    return v


def _activation(v):
    if v is not None and not (isinstance(v, str) and v == "relu"):
        raise Refuse("activation must be None or 'relu'")
    return v == "relu"


def check_batch_norm_forward(a):
    training = flag(a["training"], "training")
    x = plain_array(a["x"], "x")
    axis = channel_axis(a["channel_axis"])
    if x.ndim < 2:
        raise Refuse("x needs (N, C, ...)")
    C = x.shape[axis]
    w, b, rm, rv = (like(a[k], k, x, (C,), optional=True) for k in ("weight", "bias", "running_mean", "running_var"))
    if (rm is None) != (rv is None):
        raise Refuse("running_mean and running_var go together")
    relu = _activation(a["activation"])
    y, mean, invstd = outs(a["out"], 3)
    arrays = {"x": x, "weight": w, "bias": b, "running_mean": rm, "running_var": rv,
              "y": output(y, "out (y)", x.dtype, x.shape), "mean": output(mean, "out (mean)", x.dtype, (C,)),
              "invstd": output(invstd, "out (invstd)", x.dtype, (C,))}
    count = _count_array(a["num_batches_tracked"], list(arrays.values()))
    tracking = training and rm is not None
    if a["momentum"] is None:
        if tracking and count is None:
            raise Refuse("momentum=None needs num_batches_tracked")
        if tracking and int(count) < 0:
            raise Refuse("num_batches_tracked is negative")
        momentum = 1 / (int(count) + 1) if tracking else 0.0
    else:
        momentum = unit_interval(a["momentum"], "momentum")
    eps = finite(a["eps"], "eps")
    if not eps > 0:
        raise Refuse("eps must be > 0")
    values_per_channel = math.prod(s for i, s in enumerate(x.shape) if i != axis % x.ndim)
    if training:
        if values_per_channel <= 1:
            raise Refuse("training needs more than one value per channel")
        if rm is not None and not (rm.flags.writeable and rv.flags.writeable):
            raise Refuse("running statistics are read-only")
    elif rm is None:
        raise Refuse("eval needs running statistics")
    written = {k: arrays[k] for k in ("y", "mean", "invstd")}
    if training:
        written.update(running_mean=rm, running_var=rv)
    no_overlap(written, arrays, [("y", "x")])

    xm = channels_last(x.astype(np.float64), axis)
    if training:
        mu, var = xm.mean(axis=0), xm.var(axis=0)
    else:
        mu, var = rm.astype(np.float64), rv.astype(np.float64)
    inv = 1 / np.sqrt(var + eps)
    ym = (xm - mu) * inv
    if w is not None:
        ym = ym * w
    if b is not None:
        ym = ym + b
    if relu:
        ym = np.maximum(ym, 0)
    tol = tolerances(x.dtype, 10.0)
    exp = Expected([(channels_back(ym, axis, x.shape), *tol), (mu, *tol), (inv, tol[0], tol[1] * max([1.0, *inv]))])
    if tracking:
        n = xm.shape[0]
        exp.state["running_mean"] = ((1 - momentum) * rm + momentum * mu).astype(x.dtype)
        exp.state["running_var"] = ((1 - momentum) * rv + momentum * var * n / (n - 1)).astype(x.dtype)
        if count is not None:
            exp.state["num_batches_tracked"] = count + 1
    return exp


def check_batch_norm_backward(a):
    training = flag(a["training"], "training")
    x = plain_array(a["x"], "x")
    axis = channel_axis(a["channel_axis"])
    if x.ndim < 2:
        raise Refuse("x needs (N, C, ...)")
    C = x.shape[axis]
    dy = like(a["dy"], "dy", x, x.shape)
    w = like(a["weight"], "weight", x, (C,), optional=True)
    mean, invstd = like(a["mean"], "mean", x, (C,)), like(a["invstd"], "invstd", x, (C,))
    relu = _activation(a["activation"])
    y = like(a["y"], "y", x, x.shape, optional=True)
    if relu != (y is not None):
        raise Refuse("y goes with activation='relu' only")
    dx, dw, db = outs(a["out"], 3)
    arrays = {"dy": dy, "x": x, "y": y, "weight": w, "mean": mean, "invstd": invstd,
              "dx": output(dx, "out (dx)", x.dtype, x.shape), "dweight": output(dw, "out (dweight)", x.dtype, (C,)),
              "dbias": output(db, "out (dbias)", x.dtype, (C,))}
    no_overlap({k: arrays[k] for k in ("dx", "dweight", "dbias")}, arrays, [("dx", "dy"), ("dx", "x"), ("dx", "y")])

    xm, g = channels_last(x.astype(np.float64), axis), channels_last(dy.astype(np.float64), axis)
    if relu:
        g = g * (channels_last(y, axis) > 0)
    inv, wt = invstd.astype(np.float64), (1.0 if w is None else w.astype(np.float64))
    M = xm.shape[0]
    xhat = (xm - (xm.mean(axis=0) if training and M else mean)) * inv
    dbias, dweight = g.sum(axis=0), (g * xhat).sum(axis=0)
    if training and M:
        dxm = wt * inv * (g - dbias / M - xhat * dweight / M)
    else:
        dxm = g * wt * inv
    scale = 10 * max(1.0, float(np.abs(g).sum()), float(np.abs(g * xhat).sum()))
    rtol, atol = tolerances(x.dtype)
    return Expected([(channels_back(dxm, axis, x.shape), rtol, atol * scale), (dweight, rtol, atol * scale),
                     (dbias, rtol, atol * scale)])


# ---------------------------------------------------------------------- dropout

PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
LO32 = np.uint64(0xFFFFFFFF)


def philox4x32_10(counter, key):
    """Philox4x32-10 (Salmon et al. 2011) of counters (4, n) uint64 holding 32-bit words."""
    c0, c1, c2, c3 = (np.asarray(c, np.uint64) for c in counter)
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0, p1 = np.uint64(PHILOX_M0) * c0, np.uint64(PHILOX_M1) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & LO32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & LO32
        k0, k1 = (k0 + np.uint64(PHILOX_W0)) & LO32, (k1 + np.uint64(PHILOX_W1)) & LO32
    return np.stack([c0, c1, c2, c3])


def keep_bits(n, p, seed, offset):
    """The mask rule: element i kept iff word i % 4 of Philox(key=seed, counter=(i // 4,
    offset)) >= round(p * 2**32)."""
    i = np.arange(n, dtype=np.uint64)
    b = i // np.uint64(4)
    words = philox4x32_10([b & LO32, b >> np.uint64(32), np.full(n, offset & 0xFFFFFFFF, np.uint64),
                           np.full(n, offset >> 32, np.uint64)], (seed & 0xFFFFFFFF, seed >> 32))
    r = words[(i % np.uint64(4)).astype(np.intp), np.arange(n)]
    return r.astype(object) >= round(p * 2**32) if n else np.zeros(0, bool)


def packed(keep):
    return np.packbits(keep.astype(bool), bitorder="little")


def unpacked(mask, n):
    return np.unpackbits(mask, bitorder="little", count=n).astype(bool)


def _factor(keep, p, dtype):
    """1 / (1 - p) rounded to dtype where kept, 0 elsewhere (p = 1: 0 everywhere)."""
    scale = dtype.type(1 / (1 - p)) if p < 1 else dtype.type(0)
    return np.where(keep, scale, dtype.type(0)).astype(dtype)


def _mask_array(v, n):
    v = plain_array(v, "mask", dtypes=(np.dtype(np.uint8),))
    if v.shape != ((n + 7) // 8,):
        raise Refuse("mask must have (n + 7) // 8 bytes")
    return v


def _u64(v, name):
    return integer(v, name, 0, U64_MAX)


def check_dropout(a):
    x = plain_array(a["x"], "x")
    p = unit_interval(a["p"], "p")
    training = flag(a["training"], "training")
    generator = a["generator"]
    if a["seed"] is None:
        default_offset(a["offset"])
        if generator is not None and not isinstance(generator, fastnn.random.Generator):
            raise Refuse("generator is not a Generator")
        generator = generator or fastnn.random.default_generator
        seed, offset = generator.get_state() if training else (None, None)
    else:
        seed, offset = _u64(a["seed"], "seed"), _u64(a["offset"], "offset")
        if generator is not None:
            raise Refuse("seed and generator together")
        generator = None
    y, mask = outs(a["out"], 2)
    arrays = {"x": x, "y": output(y, "out (y)", x.dtype, x.shape),
              "mask": output(mask, "out (mask)", np.uint8, ((x.size + 7) // 8,))}
    no_overlap({"y": arrays["y"], "mask": arrays["mask"]}, arrays, [("y", "x")])
    n = x.size
    keep = keep_bits(n, p, seed, offset) if training else np.ones(n, bool)
    ref = x * _factor(keep, p, x.dtype).reshape(x.shape) if training else x.copy()
    exp = Expected([(ref, "exact"), (packed(keep), "exact")])
    if training and a["seed"] is None:
        exp.draws = (generator, n)
        exp.fresh = {"seed": seed, "offset": offset, "generator": None}
    return exp


def check_dropout_backward(a):
    dy = plain_array(a["dy"], "dy")
    p = unit_interval(a["p"], "p")
    n = dy.size
    if a["mask"] is None:
        if a["seed"] is None:
            raise Refuse("no mask and no seed")
        keep = keep_bits(n, p, _u64(a["seed"], "seed"), _u64(a["offset"], "offset"))
        mask = None
    else:
        mask = _mask_array(a["mask"], n)
        if a["seed"] is not None:
            raise Refuse("mask and seed together")
        default_offset(a["offset"])
        keep = unpacked(mask, n)
    (dx,) = outs(a["out"], 1)
    arrays = {"dy": dy, "mask": mask, "dx": output(dx, "out (dx)", dy.dtype, dy.shape)}
    no_overlap({"dx": arrays["dx"]}, arrays, [("dx", "dy")])
    return Expected([(dy * _factor(keep, p, dy.dtype).reshape(dy.shape), "exact")])


def check_dropout_mask(a):
    n = integer(a["n"], "n", 0)
    p = unit_interval(a["p"], "p")
    seed, offset = _u64(a["seed"], "seed"), _u64(a["offset"], "offset")
    (out,) = outs(a["out"], 1)
    output(out, "out", np.uint8, ((n + 7) // 8,))
    return Expected([(packed(keep_bits(n, p, seed, offset)), "exact")])


# ---------------------------------------------------------------------- softmax

def _labels(v, rows, classes):
    v = plain_array(v, "labels", dtypes=LABEL_DTYPES)
    if v.shape != (rows,):
        raise Refuse("labels must have one entry per row")
    if rows and (v.min() < 0 or v.max() >= classes):
        raise Refuse("a label is out of range")
    return v


def _softmax64(z):
    e = np.exp(z - z.max(axis=1, keepdims=True)) if z.size else z.copy()
    return e / e.sum(axis=1, keepdims=True) if z.size else e


def check_softmax_cross_entropy(a):
    logits = plain_array(a["logits"], "logits")
    if logits.ndim != 2:
        raise Refuse("logits must be (N, K)")
    N, K = logits.shape
    labels = _labels(a["labels"], N, K)  # checked on the host whatever check_labels says
    flag(a["check_labels"], "check_labels")
    loss, probs = outs(a["out"], 2)
    arrays = {"logits": logits, "labels": labels, "loss": output(loss, "out (loss)", logits.dtype, ()),
              "probs": output(probs, "out (probs)", logits.dtype, (N, K))}
    no_overlap({"loss": arrays["loss"], "probs": arrays["probs"]}, arrays, [("probs", "logits")])
    z = logits.astype(np.float64)
    pr = _softmax64(z)
    if N:
        m = z.max(axis=1)
        lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
        loss64 = np.mean(lse - z[np.arange(N), labels])
    else:
        loss64 = np.nan
    tol = tolerances(logits.dtype, 10.0)
    return Expected([(np.asarray(loss64), *tol), (pr, *tol)])


def check_softmax_cross_entropy_backward(a):
    probs = plain_array(a["probs"], "probs")
    if probs.ndim != 2:
        raise Refuse("probs must be (N, K)")
    N, K = probs.shape
    labels = _labels(a["labels"], N, K)
    flag(a["check_labels"], "check_labels")
    (out,) = outs(a["out"], 1)
    arrays = {"probs": probs, "labels": labels, "out": output(out, "out", probs.dtype, (N, K))}
    no_overlap({"out": arrays["out"]}, arrays, [("out", "probs")])
    d = probs.astype(np.float64).copy()
    if N:
        d[np.arange(N), labels] -= 1
        d /= N
    return Expected([(d, *tolerances(probs.dtype))])


def check_softmax(log):
    def check(a):
        x = plain_array(a["x"], "x", layout=False)  # NumPy computes it: any layout
        nd = max(x.ndim, 1)
        dim = integer(a["dim"], "dim", -nd, nd - 1)
        z = x.astype(np.float64).reshape(x.shape or (1,))
        if z.size == 0:
            ref = z.copy()
        else:
            m = z.max(axis=dim, keepdims=True)
            s = np.exp(z - m).sum(axis=dim, keepdims=True)
            ref = (z - m) - np.log(s) if log else np.exp(z - m) / s
        return Expected([(ref.reshape(x.shape), *tolerances(x.dtype, 10.0))])
    return check


# ============================================================ making the arguments


@dataclass
class Arg:
    kind: str           # "array", "state", "out", "real", "flag", "int", "u64", "str", "generator",
                        # "labels", "count", "mask", "none" (an optional argument left None)
    value: object
    keyword: bool = True
    alt: object = None  # kind "none": a valid value to pass instead of None
    changes: list = None  # scalars: the other values to try (default: the kind's)


@dataclass
class Op:
    name: str
    build: object       # rng -> dict of name -> Arg, in call order
    check: object       # the rules: dict of name -> value -> Expected, or Refuse
    outputs: object = None  # args -> the (dtype, shape) of each result, for out= (None: no out=)


def pick(rng, seq):
    return seq[int(rng.integers(0, len(seq)))]


def between(rng, lo, hi):
    return int(rng.integers(lo, hi + 1))


def coin(rng):
    return bool(rng.integers(0, 2))


def optional(kind, value, present, keyword=False):
    """An optional array argument: value, or None (with value as the valid alternative)."""
    return Arg(kind, value, keyword) if present else Arg("none", None, keyword, alt=value)


def values(rng, shape, dtype, specials):
    """Normal values at a random scale and offset; with specials, also NaN, 0, -0 and
    large ones."""
    scale = 10.0 ** rng.integers(-2, 3)
    a = np.array(rng.standard_normal(shape) * scale + rng.choice([0.0, 0.0, 3.0, -50.0]), dtype)
    if specials and a.size and rng.random() < 0.5:
        k = rng.integers(1, a.size + 1)
        idx = rng.integers(0, a.size, k)
        a.reshape(-1)[idx] = rng.choice(np.array([np.nan, 0.0, -0.0, 30.0, -30.0, 1e4], dtype), k)
    return a


def small_shape(rng, ndim_min=0, ndim_max=3, dim_max=5, empty=True):
    nd = between(rng, ndim_min, ndim_max)
    lo = 0 if empty and between(rng, 0, 9) == 0 else 1
    return tuple(between(rng, lo, dim_max) for _ in range(nd))


def float_dtype(rng):
    return np.dtype(pick(rng, [np.float32, np.float64]))


def build_activation(name, backward):
    hyper_names = ACTIVATIONS[name][0]
    good = {"negative_slope": [0.01, 0.2, -0.5, 0.0], "alpha": [1.0, 1.3, -0.5], "approximate": ["none", "tanh"],
            "beta": [1.0, 2.5, 0.5], "threshold": [20.0, 7.0, float("inf"), -3.0]}

    def build(rng):
        dtype = float_dtype(rng)
        shape = small_shape(rng) if between(rng, 0, 4) else (between(rng, 0, 300),)
        args = {}
        if backward:
            args["dy"] = Arg("array", values(rng, shape, dtype, True), keyword=False)
        args["x"] = Arg("array", values(rng, shape, dtype, True), keyword=False)
        for h in hyper_names:
            args[h] = Arg("str" if h == "approximate" else "real", pick(rng, good[h]))
        args["out"] = Arg("out", None)
        return args
    return build


def build_prelu(backward):
    def build(rng):
        dtype = float_dtype(rng)
        axis = pick(rng, [1, -1])
        if coin(rng):
            shape = small_shape(rng, 0, 3)
            w = np.array([rng.uniform(-1, 1)], dtype)
        else:
            shape = small_shape(rng, 2, 4)
            w = rng.uniform(-1, 1, shape[axis]).astype(dtype)
        args = {}
        if backward:
            args["dy"] = Arg("array", values(rng, shape, dtype, True), keyword=False)
        args.update(x=Arg("array", values(rng, shape, dtype, True), keyword=False),
                    weight=Arg("array", w, keyword=False), channel_axis=Arg("int", axis), out=Arg("out", None))
        return args
    return build


def build_maxout(backward):
    def build(rng):
        dtype = float_dtype(rng)
        axis = pick(rng, [1, -1])
        pieces = between(rng, 1, 4)
        shape = list(small_shape(rng, 2, 4, dim_max=4))
        shape[axis] = pieces * between(rng, 0 if between(rng, 0, 9) == 0 else 1, 3)
        x = values(rng, shape, dtype, True)
        if rng.random() < 0.3 and x.size:  # ties
            x = np.round(x).astype(dtype)
        args = {}
        if backward:
            args["dy"] = Arg("array", values(rng, _maxout_shape(x, pieces, axis), dtype, True), keyword=False)
        args.update(x=Arg("array", x, keyword=False), pieces=Arg("int", pieces, keyword=False),
                    channel_axis=Arg("int", axis), out=Arg("out", None))
        return args
    return build


def build_batch_norm_forward(rng):
    dtype = float_dtype(rng)
    axis = pick(rng, [1, -1])
    shape = small_shape(rng, 2, 4, dim_max=4)
    if math.prod(s for i, s in enumerate(shape) if i != axis % len(shape)) <= 1:
        shape = (3,) + shape[1:]
    C = shape[axis]
    x = values(rng, shape, dtype, False)
    training = coin(rng)
    affine, tracking = coin(rng), coin(rng) or not training
    args = {
        "x": Arg("array", x, keyword=False),
        "weight": optional("array", rng.standard_normal(C).astype(dtype), affine),
        "bias": optional("array", rng.standard_normal(C).astype(dtype), affine),
        "running_mean": optional("state", rng.standard_normal(C).astype(dtype), tracking),
        "running_var": optional("state", rng.uniform(0.5, 2, C).astype(dtype), tracking),
        "training": Arg("flag", training),
        "momentum": Arg("real", pick(rng, [0.1, 0.0, 1.0, 0.5, None])),
        "eps": Arg("real", pick(rng, [1e-5, 1e-3, 1.0])),
        "channel_axis": Arg("int", axis),
        "activation": Arg("str", pick(rng, [None, "relu"])),
        "num_batches_tracked": Arg("count", np.array(between(rng, 0, 5), np.int64)),
        "out": Arg("out", None),
    }
    return args


def build_batch_norm_backward(rng):
    dtype = float_dtype(rng)
    axis = pick(rng, [1, -1])
    shape = small_shape(rng, 2, 4, dim_max=4)
    C = shape[axis]
    x = values(rng, shape, dtype, False)
    xm = channels_last(x.astype(np.float64), axis)
    if xm.shape[0]:
        mean, inv = xm.mean(axis=0), 1 / np.sqrt(xm.var(axis=0) + 1e-5)
    else:
        mean, inv = np.zeros(C), np.ones(C)
    relu = coin(rng)
    y = channels_back((xm - mean) * inv, axis, shape).astype(dtype)
    return {
        "dy": Arg("array", values(rng, shape, dtype, False), keyword=False),
        "x": Arg("array", x, keyword=False),
        "weight": optional("array", rng.standard_normal(C).astype(dtype), coin(rng)),
        "mean": Arg("array", mean.astype(dtype), keyword=False),
        "invstd": Arg("array", inv.astype(dtype), keyword=False),
        "training": Arg("flag", coin(rng)),
        "channel_axis": Arg("int", axis),
        "activation": Arg("str", "relu" if relu else None),
        "y": optional("array", y, relu, keyword=True),
        "out": Arg("out", None),
    }


def build_dropout(rng):
    dtype = float_dtype(rng)
    shape = small_shape(rng) if between(rng, 0, 3) else (between(rng, 0, 200),)
    explicit = coin(rng)
    return {
        "x": Arg("array", values(rng, shape, dtype, True), keyword=False),
        "p": Arg("real", pick(rng, [0.5, 0.0, 1.0, 0.1, 0.9, 1 - 2**-33]), keyword=False),
        "seed": Arg("u64", int(rng.integers(0, 2**63)) * pick(rng, [1, 2]) if explicit else None),
        "offset": Arg("u64", int(rng.integers(0, 2**40)) if explicit else 0),
        "training": Arg("flag", coin(rng) or coin(rng)),
        "generator": Arg("generator", None if explicit or coin(rng)
                         else fastnn.random.Generator(int(rng.integers(0, 2**63)))),
        "out": Arg("out", None),
    }


def build_dropout_backward(rng):
    dtype = float_dtype(rng)
    shape = small_shape(rng) if between(rng, 0, 3) else (between(rng, 0, 200),)
    n = math.prod(shape)
    p = pick(rng, [0.5, 0.0, 1.0, 0.25])
    with_mask = coin(rng)
    return {
        "dy": Arg("array", values(rng, shape, dtype, True), keyword=False),
        "mask": optional("mask", packed(rng.random(n) < 0.5), with_mask),
        "p": Arg("real", p, keyword=False),
        "seed": Arg("u64", None if with_mask else int(rng.integers(0, 2**63))),
        "offset": Arg("u64", 0 if with_mask else int(rng.integers(0, 2**40))),
        "out": Arg("out", None),
    }


def build_dropout_mask(rng):
    return {
        "n": Arg("int", between(rng, 0, 100), keyword=False,  # no valid n too large to allocate
                 changes=[-1, 2**63, 2**70, -(2**70), 1.0, "1", True, None, np.int64(37), np.uint8(9), 0]),
        "p": Arg("real", pick(rng, [0.5, 0.0, 1.0, 0.3]), keyword=False),
        "seed": Arg("u64", int(rng.integers(0, 2**63)) * pick(rng, [1, 2])),
        "offset": Arg("u64", pick(rng, [0, 1, 2**32 - 1, 2**63, U64_MAX])),
        "out": Arg("out", None),
    }


def _labels_for(rng, N, K, dtype):
    return rng.integers(0, max(K, 1), N).astype(dtype)


def build_softmax_cross_entropy(backward):
    def build(rng):
        dtype = float_dtype(rng)
        N, K = between(rng, 0, 6), between(rng, 1, 7)
        z = values(rng, (N, K), dtype, False)
        labels = _labels_for(rng, N, K, pick(rng, [np.int32, np.int64]))
        first = ("probs", Arg("array", _softmax64(z.astype(np.float64)).astype(dtype), keyword=False)) if backward \
            else ("logits", Arg("array", z, keyword=False))
        return {first[0]: first[1], "labels": Arg("labels", labels, keyword=False),
                "check_labels": Arg("flag", coin(rng)), "out": Arg("out", None)}
    return build


def build_softmax(rng):
    dtype = float_dtype(rng)
    shape = small_shape(rng)
    nd = max(len(shape), 1)
    return {"x": Arg("array", values(rng, shape, dtype, False), keyword=False),
            "dim": Arg("int", between(rng, -nd, nd - 1))}


# ------------------------------------------------------------------ the changes

WRONG_DTYPES = [np.float16, np.int32, np.int64, np.bool_, np.complex64, np.uint8]


def aligned_bytes(nbytes):
    """A fresh 64-byte-aligned uint8 buffer."""
    raw = np.empty(nbytes + 64, np.uint8)
    start = (-raw.__array_interface__["data"][0]) % 64
    return raw[start:start + nbytes]


def change_array(draw, rng, a):
    """Another value for an array argument a (float, uint8 or int)."""
    if a is None:
        a = values(rng, (3,), np.float32, False)
    change = draw(st.sampled_from(["readonly", "parameter", "dtype", "byteswap", "strided", "fortran", "transposed",
                                   "unaligned", "masked", "list", "none", "scalar", "reshape", "empty", "zero_d",
                                   "object", "other_float"]))
    if change == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if change == "parameter":
        return Parameter(a.copy()) if a.dtype in FLOATS else a.copy()
    if change == "dtype":
        return a.astype(pick(rng, WRONG_DTYPES))
    if change == "other_float":
        return a.astype(np.float64 if a.dtype == np.float32 else np.float32)
    if change == "byteswap":
        return a.astype(a.dtype.newbyteorder(">" if a.dtype.byteorder in "=<" else "<")) \
            if a.dtype.itemsize > 1 else a.astype(np.float32)
    if change == "strided":
        if a.ndim == 0:
            return a
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        view = wide[..., ::2]
        view[...] = a
        return view
    if change == "fortran":
        return np.asfortranarray(a)
    if change == "transposed":  # channels-last memory seen as channels-first: not C-contiguous
        return np.ascontiguousarray(np.moveaxis(a, 1, -1)).transpose(
            [0, a.ndim - 1] + list(range(1, a.ndim - 1))) if a.ndim >= 3 else a.T
    if change == "unaligned":
        if a.dtype.itemsize == 1:
            return a
        buf = aligned_bytes(a.nbytes + 1)[1:]
        view = buf.view(a.dtype).reshape(a.shape)
        view[...] = a
        return view
    if change == "masked":
        return np.ma.array(a, mask=np.zeros(a.shape, bool))
    if change == "list":
        return a.tolist()
    if change == "none":
        return None
    if change == "scalar":
        return a.reshape(-1)[0].item() if a.size else 1.0
    if change == "reshape":
        how = pick(rng, ["flat", "lead", "drop", "grow", "reverse"])
        if how == "flat":
            return a.reshape(-1).copy()
        if how == "lead":
            return a[None].copy()
        if how == "drop" and a.ndim and a.shape[-1]:
            return np.ascontiguousarray(a[..., :-1])
        if how == "reverse" and a.ndim >= 2:
            return a.reshape(a.shape[::-1]).copy()
        return np.concatenate([a.reshape(-1), a.reshape(-1)[:1] if a.size else np.zeros(1, a.dtype)])
    if change == "empty":
        shape = list(a.shape) or [1]
        shape[between(rng, 0, len(shape) - 1)] = 0
        return np.zeros(shape, a.dtype)
    if change == "zero_d":
        return np.array(a.reshape(-1)[0] if a.size else 1, a.dtype)
    return object()


def change_out(draw, rng, args, template):
    """An out= entry: None, a fresh array like the result, or one of the wrong kinds,
    or an alias of another argument, exact or partial."""
    dtype, shape = template
    change = draw(st.sampled_from(["good", "none", "readonly", "dtype", "shape", "strided", "alias", "overlap",
                                   "masked", "list", "parameter", "unaligned"]))
    fresh = np.full(shape, 0xAB if dtype == np.uint8 else 7, dtype)
    if change == "good":
        return fresh
    if change == "none":
        return None
    if change == "readonly":
        fresh.flags.writeable = False
        return fresh
    if change == "dtype":
        return fresh.astype(np.float16 if dtype != np.float16 else np.float32)
    if change == "shape":
        return np.full(shape + (1,) if coin(rng) else (fresh.size + 1,), 7, dtype)
    if change == "parameter":
        return Parameter(fresh) if dtype in FLOATS else fresh
    if change in ("strided", "unaligned", "masked", "list"):
        return wrong_layout(fresh, change)
    arrays = [k for k, v in args.items() if isinstance(v.value, np.ndarray) and v.kind != "out"]
    if not arrays:
        return fresh
    target = pick(rng, arrays)
    t = args[target].value
    if change == "alias":
        return t
    # overlap: the target and the out array become views of one buffer, out starting
    # k elements (of the larger item size) after it
    unit = max(t.dtype.itemsize, dtype.itemsize)
    nbytes_out = int(np.prod(shape)) * dtype.itemsize
    k = between(rng, 0, max(t.nbytes // unit, 1))
    buf = aligned_bytes(max(t.nbytes, k * unit + nbytes_out) + unit)
    tv = buf[:t.nbytes].view(t.dtype).reshape(t.shape)
    tv[...] = t
    tv.flags.writeable = t.flags.writeable
    args[target] = Arg(args[target].kind, tv, args[target].keyword)
    return buf[k * unit:k * unit + nbytes_out].view(dtype).reshape(shape)


def wrong_layout(a, change):
    """An out= array like a but strided, unaligned, masked or a list."""
    if change == "strided" and a.ndim:
        wide = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
        return wide[..., ::2]
    if change == "unaligned" and a.dtype.itemsize > 1:
        return aligned_bytes(a.nbytes + 1)[1:].view(a.dtype).reshape(a.shape)
    if change == "masked":
        return np.ma.array(a)
    return a.tolist()


REAL_CHANGES = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e300, -1e300, 2**70, 10**400, "0.5", None,
                True, np.True_, np.float32(0.25), np.float64(0.75), np.int64(1), 1j, 3, [0.5]]
FLAG_CHANGES = [np.True_, np.False_, "no", "", "False", 0, 1, None, 1.0, [True]]
INT_CHANGES = [0, 2, -2, 3, 2**24 + 1, 2**63, 2**70, -(2**70), 1.0, "1", True, np.False_, None,
               np.int32(1), np.int64(-1), np.uint8(2)]
U64_CHANGES = [0, U64_MAX, U64_MAX + 1, -1, 2**70, 1.5, "7", True, None, np.uint64(2**64 - 2), np.int64(5),
               np.int8(-3)]
STR_CHANGES = [None, "relu", "tanh", "none", "RELU", "erf", "", 1, b"tanh", True]


def change_scalar(draw, kind, value):
    if kind == "real":
        return draw(st.sampled_from(REAL_CHANGES))
    if kind == "flag":
        return draw(st.sampled_from(FLAG_CHANGES + [not value]))
    if kind == "int":
        return draw(st.sampled_from(INT_CHANGES + ([np.int64(value), -value] if isinstance(value, int) else [])))
    if kind == "u64":
        return draw(st.sampled_from(U64_CHANGES))
    if kind == "str":
        return draw(st.sampled_from(STR_CHANGES))
    if kind == "generator":
        return draw(st.sampled_from([None, fastnn.random.Generator(3), "generator", np.random.default_rng(0)]))
    raise AssertionError(kind)


def change_count(draw):
    return draw(st.sampled_from([None, np.array(-3, np.int64), np.array(2**62, np.int64), np.array(1, np.int32),
                                 np.array([1], np.int64), 4, "1", np.ma.array(np.array(0, np.int64)),
                                 np.frombuffer(np.zeros(1, np.int64).tobytes(), np.int64).reshape(()),
                                 "alias"]))


def change_labels(draw, rng, labels):
    change = draw(st.sampled_from(["high", "negative", "float", "uint8", "byteswap", "shape", "list", "readonly",
                                   "other_int", "none"]))
    if change == "high":
        bad = labels.copy()
        if bad.size:
            bad[rng.integers(0, bad.size)] = 10**6
        return bad
    if change == "negative":
        bad = labels.copy()
        if bad.size:
            bad[rng.integers(0, bad.size)] = -1
        return bad
    if change == "float":
        return labels.astype(np.float32)
    if change == "uint8":
        return labels.astype(np.uint8)
    if change == "byteswap":
        return labels.astype(labels.dtype.newbyteorder(">"))
    if change == "shape":
        return np.concatenate([labels, labels[:1] if labels.size else np.zeros(1, labels.dtype)])
    if change == "list":
        return labels.tolist()
    if change == "readonly":
        labels = labels.copy()
        labels.flags.writeable = False
        return labels
    if change == "other_int":
        return labels.astype(np.int32 if labels.dtype == np.int64 else np.int64)
    return None


def make_call(op, draw):
    """The arguments of a valid call of op, with up to three of them changed (and out=
    given in a third of the calls)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    args = op.build(rng)
    names = list(args)
    changed = draw(st.lists(st.sampled_from(names), max_size=3, unique=True))
    for name in changed:
        arg = args[name]
        if arg.kind == "none":  # an optional argument left None: give it something
            alt = arg.alt if arg.alt is not None else values(rng, (3,), np.float32, False)
            value = alt if coin(rng) else change_array(draw, rng, alt)
        elif arg.kind in ("array", "state", "mask"):
            value = change_array(draw, rng, arg.value)
        elif arg.kind == "out":
            value = None
        elif arg.kind == "labels":
            value = change_labels(draw, rng, arg.value)
        elif arg.kind == "count":
            value = change_count(draw)
            if isinstance(value, str) and value == "alias":
                others = [k for k, v in args.items() if isinstance(v.value, np.ndarray) and v.value.size]
                value = args[pick(rng, others)].value.reshape(-1)[:1].view(np.uint8)[:8]
                value = value.view(np.int64).reshape(()) if value.size == 8 else np.array(0, np.int64)
        elif arg.changes is not None:
            value = draw(st.sampled_from(arg.changes))
        else:
            value = change_scalar(draw, arg.kind, arg.value)
        args[name] = Arg(arg.kind, value, arg.keyword, arg.alt, arg.changes)
    # out=: None, one array, or a tuple (sometimes of the wrong length, or a list)
    templates = op.outputs(args) if op.outputs else None
    if templates and ("out" in changed or between(rng, 0, 2) == 0):
        form = pick(rng, ["one", "one", "tuple", "tuple", "tuple", "list", "short", "long"])
        entries = [change_out(draw, rng, args, t) for t in templates]
        if form == "one":
            out = entries[0]
        elif form == "tuple":
            out = tuple(entries)
        elif form == "list":
            out = list(entries)
        elif form == "short":
            out = tuple(entries[:-1])
        else:
            out = tuple(entries) + (None,)
        args["out"] = Arg("out", out)
    return args


def result_templates(*specs):
    """op.outputs: the (dtype, shape) of each result of a valid call, from its arguments
    (a guess where the arguments are no longer valid)."""
    def templates(args):
        def first_array(*names):
            for n in names:
                v = args[n].value if n in args else None
                v = v.data if isinstance(v, Parameter) else v
                if isinstance(v, np.ndarray):
                    return v
            return np.zeros(3, np.float32)
        out = []
        for spec in specs:
            out.append(spec(args, first_array))
        return [(np.dtype(d) if np.dtype(d) in FLOATS or np.dtype(d) == np.uint8 else np.dtype(np.float32),
                 tuple(s)) for d, s in out]
    return templates


def like_x(name):
    return lambda args, first: (first(name).dtype, first(name).shape)


def per_channel(args, first):
    x = first("x")
    axis = args["channel_axis"].value if isinstance(args["channel_axis"].value, int) else 1
    return x.dtype, ((x.shape[axis],) if x.ndim >= 2 and axis in (1, -1) else (1,))


def mask_of(name):
    def spec(args, first):
        x = first(name) if name else None
        n = x.size if name else (args["n"].value if isinstance(args["n"].value, int) and 0 <= args["n"].value < 10**6
                                 else 8)
        return np.uint8, ((n + 7) // 8,)
    return spec


def maxout_out(args, first):
    x = first("x")
    pieces, axis = args["pieces"].value, args["channel_axis"].value
    if type(pieces) is int and pieces > 0 and type(axis) is int and axis in (1, -1) and x.ndim >= 2:
        return x.dtype, _maxout_shape(x, pieces, axis)
    return x.dtype, x.shape


def weight_like(args, first):
    return first("weight").dtype, first("weight").shape


# ================================================================= the functions

OPS = []
for _name in ACTIVATIONS:
    OPS.append(Op(_name, build_activation(_name, False), check_activation(_name, False), result_templates(like_x("x"))))
    OPS.append(Op(_name + "_backward", build_activation(_name, True), check_activation(_name, True),
                  result_templates(like_x("x"))))
OPS += [
    Op("prelu", build_prelu(False), check_prelu(False), result_templates(like_x("x"))),
    Op("prelu_backward", build_prelu(True), check_prelu(True), result_templates(like_x("x"), weight_like)),
    Op("maxout", build_maxout(False), check_maxout(False), result_templates(maxout_out)),
    Op("maxout_backward", build_maxout(True), check_maxout(True), result_templates(like_x("x"))),
    Op("batch_norm_forward", build_batch_norm_forward, check_batch_norm_forward,
       result_templates(like_x("x"), per_channel, per_channel)),
    Op("batch_norm_backward", build_batch_norm_backward, check_batch_norm_backward,
       result_templates(like_x("x"), per_channel, per_channel)),
    Op("dropout", build_dropout, check_dropout, result_templates(like_x("x"), mask_of("x"))),
    Op("dropout_backward", build_dropout_backward, check_dropout_backward, result_templates(like_x("dy"))),
    Op("dropout_mask", build_dropout_mask, check_dropout_mask, result_templates(mask_of(None))),
    Op("softmax_cross_entropy", build_softmax_cross_entropy(False), check_softmax_cross_entropy,
       result_templates(lambda a, f: (f("logits").dtype, ()), like_x("logits"))),
    Op("softmax_cross_entropy_backward", build_softmax_cross_entropy(True), check_softmax_cross_entropy_backward,
       result_templates(like_x("probs"))),
    Op("softmax", build_softmax, check_softmax(False)),
    Op("log_softmax", build_softmax, check_softmax(True)),
]


def test_every_function_is_fuzzed():
    public = {name for name in F.__all__ if callable(getattr(F, name)) and not name[0].isupper()}
    assert public == {op.name for op in OPS}


# ================================================================== running a call


def arrays_in(value):
    """Every NumPy array reachable from an argument (Parameters' data, out= tuples,
    masked arrays' data)."""
    if isinstance(value, Parameter):
        return [value.data]
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, (tuple, list)):
        return [a for v in value for a in arrays_in(v)]
    return []


def snapshot(args):
    return [(a, a.copy()) for arg in args.values() for a in arrays_in(arg.value)]


def unchanged(before, after):
    return before.shape == after.shape and before.tobytes() == after.tobytes()


def invoke(op, args):
    fn = getattr(F, op.name)
    positional = [a.value for a in args.values() if not a.keyword]
    keywords = {k: a.value for k, a in args.items() if a.keyword}
    return fn(*positional, **keywords)


def names_an_argument(op, message):
    names = set(invoke_names(op)) | {"out"}
    return any(re.search(rf"(?<![A-Za-z_]){re.escape(n)}(?![A-Za-z_])", message) for n in names)


def invoke_names(op):
    import inspect

    return list(inspect.signature(getattr(F, op.name)).parameters)


def results_of(result):
    return list(result) if isinstance(result, tuple) else [result]


def same_bits(a, b):
    """Equal values, NaN where NaN, and the same sign of zero."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    return np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


def fresh_args(args, before, overrides):
    """The same call with contiguous copies of every array as it was before the call,
    and no out=."""
    pre = {id(a): copy for a, copy in before}
    fresh = {}
    for name, arg in args.items():
        v = arg.value
        if name == "out":
            v = None
        elif isinstance(v, Parameter):
            v = pre[id(v.data)].copy()
        elif isinstance(v, np.ndarray):
            v = pre[id(v)].copy()
        fresh[name] = Arg(arg.kind, overrides.get(name, v), arg.keyword)
    return fresh


def run_case(op, args):
    gens = [fastnn.random.default_generator] + [a.value for a in args.values()
                                                if isinstance(a.value, fastnn.random.Generator)]
    gen_states = [g.get_state() for g in gens]
    values_ = {k: a.value for k, a in args.items()}
    try:
        expected, verdict = op.check(values_), None
    except Refuse as refuse:
        expected, verdict = None, str(refuse)
    before = snapshot(args)
    try:
        result = invoke(op, args)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        assert expected is None, f"{op.name} refused a valid call: {type(exc).__name__}: {message}"
        assert names_an_argument(op, message), f"{op.name}: the message names no argument: {message!r}"
        for array, copy in before:
            assert unchanged(copy, array), f"{op.name}: a refused call ({message}) changed an array"
        assert [g.get_state() for g in gens] == gen_states, f"{op.name}: a refused call moved a generator"
        return "refused"
    assert expected is not None, f"{op.name} accepted a call the rules refuse: {verdict}"

    results = results_of(result)
    assert len(results) == len(expected.results)
    # nothing but the outputs and the state was written
    state = {id(a) for name in expected.state for a in arrays_in(args[name].value)}
    for array, copy in before:
        if id(array) in state or any(np.shares_memory(array, r) for r in results):
            continue
        assert unchanged(copy, array), f"{op.name} wrote an array that is not its output"
    for (ref, *tol), got in zip(expected.results, results):
        assert isinstance(got, np.ndarray)
        if tol == ["exact"]:
            assert same_bits(got, ref.astype(got.dtype)), f"{op.name}: result differs from the reference"
        else:
            assert got.shape == ref.shape, f"{op.name}: shape {got.shape}, expected {ref.shape}"
            with np.errstate(all="ignore"):
                np.testing.assert_allclose(got.astype(np.float64), ref.astype(got.dtype).astype(np.float64),
                                           rtol=tol[0], atol=tol[1], equal_nan=True, err_msg=op.name)
    for name, value in expected.state.items():
        got = args[name].value
        if got.dtype == np.int64:
            assert int(got) == int(value), f"{op.name}: {name} is {got}, expected {value}"
        else:
            with np.errstate(all="ignore"):
                np.testing.assert_allclose(got, value, rtol=tolerances(got.dtype)[0], atol=1e-6, err_msg=name)
    # the generator moved by ceil(n / 4) if the call drew, else not at all
    for g, (seed, offset) in zip(gens, gen_states):
        moved = (expected.draws is not None and expected.draws[0] is g)
        want = (seed, offset + (expected.draws[1] + 3) // 4) if moved else (seed, offset)
        assert g.get_state() == want, f"{op.name}: generator at {g.get_state()}, expected {want}"

    # the same call with fresh arguments gives the same bits
    fresh = fresh_args(args, before, expected.fresh)
    again = results_of(invoke(op, fresh))
    for got, ref in zip(results, again):
        assert same_bits(got, ref), f"{op.name}: out=/aliasing changed the result"
    for name in expected.state:
        assert same_bits(args[name].value, fresh[name].value), f"{op.name}: {name} differs from a fresh call"
    return "accepted"


@pytest.mark.parametrize("op", OPS, ids=[op.name for op in OPS])
def test_fuzz(op):
    outcomes = []

    @FUZZ
    @given(st.data())
    def fuzz(data):
        args = make_call(op, data.draw)
        outcomes.append(run_case(op, args))

    with np.errstate(all="ignore"):
        fuzz()
    # both kinds of outcome were explored
    assert outcomes.count("accepted") >= EXAMPLES // 10 and outcomes.count("refused") >= EXAMPLES // 10, \
        (outcomes.count("accepted"), outcomes.count("refused"))


def test_reference_philox_known_answers():
    """The test's own Philox4x32-10 gives Random123's known answers."""
    cases = [((0, 0), (0, 0, 0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF,) * 4, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0xA4093822, 0x299F31D0), (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for key, counter, want in cases:
        got = philox4x32_10([np.array([c], np.uint64) for c in counter], key)[:, 0]
        assert tuple(int(w) for w in got) == want
