"""The benchmark cases: one registry for ``fastnn bench`` and for bench/test_*.py.

A Case is one operation at one size and layout, float32. ``case.build(torch)`` makes
its arrays and returns a Built: the implementations timed side by side, each a
callable with no argument, in this order:

  fastnn       the default call (a fresh result)
  fastnn_out   the same call writing into out= arrays
  numpy        what a user writes in NumPy
  torch        the PyTorch CPU call (absent without torch)
  extras       a case's other variants (EXTRAS)
  floor        native streaming passes with the case's own traffic (Floor)

Every implementation returns what it computed, so tests can check they agree.
Sizes count the elements of the case's main array; images are (N, 64, 32, 32) and
logits (N, 1000), N rounded down (at least 1).
"""

import functools
import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

import fastnn
from fastnn import _cpu

F = fastnn.F
C, HW = 64, 32  # channels and spatial side of the image cases
CLASSES = 1000
EPS, MOMENTUM = 1e-5, 0.1
P, SEED = 0.5, 1234  # dropout

# Extra implementations some cases have, with the label the table shows.
EXTRAS = {
    "fastnn_unfused": "fastnn BN then relu",
    "fastnn_regen": "fastnn regenerated mask",
    "fastnn_skip": "fastnn skip_if_nonfinite",
    "torch_foreach": "PyTorch foreach",
}


def size_label(n):
    for unit, div in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def parse_size(text):
    """'256K', '64M' or '1000' -> elements."""
    t = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        n = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise ValueError(f"size {text!r} is not a count like 256K or 64M") from None
    if n < 1:
        raise ValueError(f"size {text!r} must be at least 1")
    return n


# ---------------------------------------------------------------------- memory floor

def _f32(a):  # a uint8 mask streams as float32 words (a last partial word left out)
    return a.reshape(-1).view(np.uint8)[: a.nbytes // 4 * 4].view(np.float32)


def stream(reads=(), writes=(), inplace=()):
    """One pass of a Floor over float32 arrays of one size: `reads` read, `writes`
    written out of place, `inplace` read and written."""
    return tuple(tuple(_f32(a) for a in arrays) for arrays in (reads, writes, inplace))


class Floor:
    """The memory floor: native streaming passes (stream(); run by _cpu.stream_pass, a
    pass that only reads by _cpu.stream_read). Its bytes are the least any
    implementation of the case must move."""

    def __init__(self, *passes):
        self.passes = passes

    def __call__(self):
        for reads, writes, inplace in self.passes:
            if writes or inplace:
                _cpu.stream_pass(reads, writes, inplace)
            else:
                for a in reads:
                    _cpu.stream_read(a)

    @property
    def bytes(self):
        return sum(sum(a.nbytes for a in r + w) + 2 * sum(a.nbytes for a in k)
                   for r, w, k in self.passes)

    @property
    def pattern(self):
        parts = []
        for r, w, k in self.passes:
            counts = [f"{verb} {len(arrays)}" for verb, arrays in
                      (("read", r), ("write", w), ("in place", k)) if arrays]
            parts.append(", ".join(counts) + f" ({size_label((r + w + k)[0].size)} each)")
        return " + ".join(parts)


@dataclass
class Built:
    impls: dict                      # name -> callable, timed in this order
    floor: Floor
    # name -> function of the call's result giving the arrays tests compare after one
    # call (default: the result; optimizers: each parameter's update)
    views: dict = field(default_factory=dict)
    # outputs drawn at random per implementation: a check each must pass instead
    random_check: Optional[Callable] = None


@dataclass(frozen=True)
class Case:
    family: str
    op: str            # "gelu_tanh backward", "adam step", ...
    layout: str        # flat, NCHW, NHWC, rows, one, mixed200
    n: int             # elements of the main array
    make: Callable = field(repr=False, compare=False)
    extras: tuple = ()  # keys of EXTRAS this case has
    has_out: bool = True  # fastnn takes out= (optimizers update in place)
    dtype: str = "float32"

    @property
    def size(self):
        return size_label(self.n)

    @property
    def name(self):
        return f"{self.op} {self.layout} {self.size}"

    def tokens(self):
        """What an --ops pattern is matched against."""
        return (self.family, self.op.split()[0], self.op, self.name)

    def impl_names(self, with_torch):
        """The implementations build() gives, in their timing order."""
        names = ["fastnn"] + (["fastnn_out"] if self.has_out else []) + ["numpy"]
        names += ["torch"] if with_torch else []
        names += [e for e in self.extras if with_torch or not e.startswith("torch")]
        return names + ["floor"]

    def build(self, torch=None):
        return self.make(self.n, torch)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _image(n, layout, rng):
    x = rng.standard_normal((max(1, n // (C * HW * HW)), C, HW, HW), dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


# ------------------------------------------------------------------------ batch norm

def _batch_norm(op, relu, layout, n, torch):
    rng = _rng()
    x = _image(n, layout, rng) * 2 + 1
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    axis = 1 if layout == "NCHW" else -1
    reduce_axes = (0, 2, 3) if layout == "NCHW" else (0, 1, 2)
    bshape = (C, 1, 1) if layout == "NCHW" else (C,)
    m = x.size // C
    weight = rng.uniform(0.5, 1.5, C).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    act = "relu" if relu else None
    training = op != "forward_eval"

    def running():
        return np.zeros(C, np.float32), np.ones(C, np.float32)

    y, mean, invstd = F.batch_norm_forward(x, weight, bias, None, None, channel_axis=axis,
                                           activation=act)
    out, dw, db = np.empty_like(x), np.empty_like(weight), np.empty_like(weight)
    rm_f, rv_f = running()
    rm_n, rv_n = running()
    w, b = weight.reshape(bshape), bias.reshape(bshape)
    impls, views = {}, {}

    if op != "backward":
        def fastnn_call(o):
            return lambda: F.batch_norm_forward(x, weight, bias, rm_f, rv_f, training=training,
                                                channel_axis=axis, activation=act, out=o)

        impls["fastnn"], impls["fastnn_out"] = fastnn_call(None), fastnn_call((out, None, None))

        def numpy_forward():
            if training:
                mu, var = x.mean(axis=reduce_axes), x.var(axis=reduce_axes)
                rm_n[:] = (1 - MOMENTUM) * rm_n + MOMENTUM * mu
                rv_n[:] = (1 - MOMENTUM) * rv_n + MOMENTUM * var * m / (m - 1)
            else:
                mu, var = rm_n, rv_n
            r = (x - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + EPS) * w + b
            return np.maximum(r, 0, out=r) if relu else r

        impls["numpy"] = numpy_forward
        floor = Floor(stream([x], [out]))
    else:
        def fastnn_call(o):
            return lambda: F.batch_norm_backward(dy, x, weight, mean, invstd, channel_axis=axis,
                                                 activation=act, y=y if relu else None, out=o)

        impls["fastnn"], impls["fastnn_out"] = fastnn_call(None), fastnn_call((out, dw, db))

        def numpy_backward():
            g = dy * (y > 0) if relu else dy
            inv = invstd.reshape(bshape)
            xhat = (x - mean.reshape(bshape)) * inv
            dbias = g.sum(axis=reduce_axes)
            dweight = (g * xhat).sum(axis=reduce_axes)
            dx = w * inv / m * (m * g - dbias.reshape(bshape) - xhat * dweight.reshape(bshape))
            return dx, dweight, dbias

        impls["numpy"] = numpy_backward
        floor = Floor(stream([x, dy, y] if relu else [x, dy], [out]))

    if torch is not None:
        tf = torch.nn.functional

        def tensor(a):  # NCHW view; channels_last memory for NHWC
            t = torch.from_numpy(a)
            return t.permute(0, 3, 1, 2) if layout == "NHWC" else t

        tx, tdy = tensor(x), tensor(dy)
        tw, tb = torch.from_numpy(weight), torch.from_numpy(bias)
        trm, trv = (torch.from_numpy(a) for a in running())
        if op != "backward":
            bn = functools.partial(tf.batch_norm, tx, trm, trv, tw, tb, training=training,
                                   momentum=MOMENTUM, eps=EPS)
            impls["torch"] = (lambda: tf.relu(bn())) if relu else bn
        else:
            z, save_mean, save_invstd = torch.native_batch_norm(tx, tw, tb, trm.clone(), trv.clone(),
                                                                True, MOMENTUM, EPS)
            ty = tf.relu(z)
            bwd = torch.ops.aten.native_batch_norm_backward

            def torch_backward():  # what autograd runs
                g = torch.ops.aten.threshold_backward(tdy, ty, 0) if relu else tdy
                return bwd(g, tx, tw, trm, trv, save_mean, save_invstd, True, EPS, [True, True, True])

            impls["torch"] = torch_backward
        if layout == "NHWC":
            back = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
            views["torch"] = back if op != "backward" else lambda r: (back(r[0]),) + tuple(r[1:])

    if relu:  # fastnn's batch norm, then a separate relu pass (backward: mask pass first)
        masked = np.empty_like(dy)
        if op != "backward":
            def unfused():
                r = F.batch_norm_forward(x, weight, bias, rm_f, rv_f, training=training,
                                         channel_axis=axis, out=(out, None, None))
                return F.relu(r.y, out=r.y)
        else:
            def unfused():
                F.relu_backward(dy, y, out=masked)
                return F.batch_norm_backward(masked, x, weight, mean, invstd, channel_axis=axis,
                                             out=(out, dw, db))
        impls["fastnn_unfused"] = unfused
    impls["floor"] = floor
    return Built(impls, floor, views)


# ----------------------------------------------------------------------- activations

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
K0, K1 = math.sqrt(2 / math.pi), 0.044715
ACTIVATIONS = ["relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "sigmoid", "tanh", "silu",
               "softplus"]


def _np_erf(x):  # Abramowitz & Stegun 7.1.26 (NumPy has no erf); |error| < 1.5e-7
    t = 1 / (1 + np.float32(0.3275911) * np.abs(x))
    p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - p * np.exp(-x * x))


def _np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _np_activation(name, direction, x, dy):
    f32 = np.float32
    if direction == "forward":
        return {
            "relu": lambda: np.maximum(x, 0),
            "leaky_relu": lambda: np.where(x > 0, x, f32(0.01) * x),
            "elu": lambda: np.where(x > 0, x, np.expm1(x)),
            "selu": lambda: f32(SELU_SCALE) * np.where(x > 0, x, f32(SELU_ALPHA) * np.expm1(x)),
            "gelu": lambda: 0.5 * x * (1 + _np_erf(x / f32(math.sqrt(2)))),
            "gelu_tanh": lambda: 0.5 * x * (1 + np.tanh(f32(K0) * (x + f32(K1) * x**3))),
            "sigmoid": lambda: _np_sigmoid(x),
            "tanh": lambda: np.tanh(x),
            "silu": lambda: x * _np_sigmoid(x),
            "softplus": lambda: np.where(x > 20, x, np.log1p(np.exp(x))),
        }[name]

    def gelu_tanh():
        t = np.tanh(f32(K0) * (x + f32(K1) * x**3))
        dz = f32(K0) * (1 + f32(3 * K1) * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dz)

    def silu():
        s = _np_sigmoid(x)
        return dy * s * (1 + x * (1 - s))

    return {
        "relu": lambda: dy * (x > 0),
        "leaky_relu": lambda: np.where(x > 0, dy, dy * f32(0.01)),
        "elu": lambda: np.where(x > 0, dy, dy * np.exp(x)),
        "selu": lambda: f32(SELU_SCALE) * np.where(x > 0, dy, dy * f32(SELU_ALPHA) * np.exp(x)),
        "gelu": lambda: dy * (0.5 * (1 + _np_erf(x / f32(math.sqrt(2))))
                              + x * np.exp(-0.5 * x * x) / f32(math.sqrt(2 * math.pi))),
        "gelu_tanh": gelu_tanh,
        "sigmoid": lambda: dy * _np_sigmoid(x) * (1 - _np_sigmoid(x)),
        "tanh": lambda: dy * (1 - np.tanh(x) ** 2),
        "silu": silu,
        "softplus": lambda: np.where(x > 20, dy, dy * _np_sigmoid(x)),
    }[name]


def _torch_activation(torch, name, direction, x, dy):
    tf, aten = torch.nn.functional, torch.ops.aten
    tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
    if direction == "forward":
        return {
            "relu": lambda: tf.relu(tx),
            "leaky_relu": lambda: tf.leaky_relu(tx, 0.01),
            "elu": lambda: tf.elu(tx),
            "selu": lambda: tf.selu(tx),
            "gelu": lambda: tf.gelu(tx),
            "gelu_tanh": lambda: tf.gelu(tx, approximate="tanh"),
            "sigmoid": lambda: torch.sigmoid(tx),
            "tanh": lambda: torch.tanh(tx),
            "silu": lambda: tf.silu(tx),
            "softplus": lambda: tf.softplus(tx),
        }[name]
    if name in ("sigmoid", "tanh"):  # torch's backward takes the forward's result
        ty = torch.sigmoid(tx) if name == "sigmoid" else torch.tanh(tx)
        bwd = aten.sigmoid_backward if name == "sigmoid" else aten.tanh_backward
        return lambda: bwd(tdy, ty)
    return {
        "relu": lambda: aten.threshold_backward(tdy, tx, 0),
        "leaky_relu": lambda: aten.leaky_relu_backward(tdy, tx, 0.01, False),
        "elu": lambda: aten.elu_backward(tdy, 1.0, 1.0, 1.0, False, tx),
        "selu": lambda: aten.elu_backward(tdy, SELU_ALPHA, SELU_SCALE, 1.0, False, tx),
        "gelu": lambda: aten.gelu_backward(tdy, tx),
        "gelu_tanh": lambda: aten.gelu_backward(tdy, tx, approximate="tanh"),
        "silu": lambda: aten.silu_backward(tdy, tx),
        "softplus": lambda: aten.softplus_backward(tdy, tx, 1.0, 20.0),
    }[name]


def _activation(name, direction, n, torch):
    rng = _rng()
    x = rng.standard_normal(n, dtype=np.float32) * 3
    dy = rng.standard_normal(n, dtype=np.float32)
    out = np.empty_like(x)
    fname, params = {"gelu_tanh": ("gelu", ("tanh",)), "leaky_relu": ("leaky_relu", (0.01,))}.get(
        name, (name, ()))
    if direction == "forward":
        fn = getattr(F, fname)
        call = lambda o: lambda: fn(x, *params, out=o)  # noqa: E731
        floor = Floor(stream([x], [out]))
    else:
        fn = getattr(F, fname + "_backward")
        call = lambda o: lambda: fn(dy, x, *params, out=o)  # noqa: E731
        floor = Floor(stream([dy, x], [out]))
    impls = {"fastnn": call(None), "fastnn_out": call(out),
             "numpy": _np_activation(name, direction, x, dy)}
    if torch is not None:
        impls["torch"] = _torch_activation(torch, name, direction, x, dy)
    impls["floor"] = floor
    return Built(impls, floor)


def _softmax_cross_entropy(direction, n, torch):
    rng = _rng(1)
    rows = max(1, n // CLASSES)
    logits = rng.standard_normal((rows, CLASSES), dtype=np.float32) * 3
    labels = rng.integers(0, CLASSES, rows)
    _, probs = F.softmax_cross_entropy(logits, labels)
    loss_out, out = np.empty((), np.float32), np.empty_like(logits)
    rows_i = np.arange(rows)
    if direction == "forward":
        call = lambda o: lambda: F.softmax_cross_entropy(logits, labels, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call((loss_out, out))}

        def numpy_forward():
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=1, keepdims=True)
            return np.mean(np.log(s[:, 0]) - z[rows_i, labels]), e / s

        impls["numpy"] = numpy_forward
        floor = Floor(stream([logits], [out]))
    else:
        call = lambda o: lambda: F.softmax_cross_entropy_backward(probs, labels, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call(out)}

        def numpy_backward():
            g = probs / rows
            g[rows_i, labels] -= 1 / rows
            return g

        impls["numpy"] = numpy_backward
        floor = Floor(stream([probs], [out]))
    if torch is not None:
        tl, tlab = torch.from_numpy(logits), torch.from_numpy(labels)
        if direction == "forward":
            impls["torch"] = lambda: torch.nn.functional.cross_entropy(tl, tlab)
        else:  # what autograd runs: nll_loss's gradient (set up here), then log_softmax's
            logp = torch.log_softmax(tl, 1)
            g = torch.ops.aten.nll_loss_backward(torch.tensor(1.0), logp, tlab, None, 1, -100,
                                                 torch.tensor(float(rows)))
            impls["torch"] = lambda: torch.ops.aten._log_softmax_backward_data(g, logp, 1, torch.float32)
    impls["floor"] = floor
    return Built(impls, floor)


# -------------------------------------------------------------------- PReLU, Maxout

PIECES = 2


def _grouped(a):  # (N, C, H, W) -> (N, C / pieces, pieces, H, W)
    return a.reshape((a.shape[0], a.shape[1] // PIECES, PIECES) + a.shape[2:])


def _prelu_maxout(op, n, torch):
    rng = _rng()
    x = _image(n, "NCHW", rng)
    weight = rng.uniform(0.1, 0.3, C).astype(np.float32)
    dy = rng.standard_normal(x.shape, dtype=np.float32)
    small = _grouped(x).max(axis=2).shape
    dy_small = rng.standard_normal(small, dtype=np.float32)
    out, out_small, dweight = np.empty_like(x), np.empty(small, np.float32), np.empty_like(weight)
    w3 = weight.reshape(-1, 1, 1)
    half = x.reshape(2, -1)
    if op == "prelu forward":
        call = lambda o: lambda: F.prelu(x, weight, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call(out),
                 "numpy": lambda: np.where(x > 0, x, w3 * x)}
        floor = Floor(stream([x], [out]))
    elif op == "prelu backward":
        call = lambda o: lambda: F.prelu_backward(dy, x, weight, out=o)  # noqa: E731

        def numpy_backward():
            pos = x > 0
            return np.where(pos, dy, w3 * dy), np.where(pos, 0, x * dy).sum(axis=(0, 2, 3))

        impls = {"fastnn": call(None), "fastnn_out": call((out, dweight)), "numpy": numpy_backward}
        floor = Floor(stream([x, dy], [out]))
    elif op == "maxout forward":
        call = lambda o: lambda: F.maxout(x, PIECES, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call(out_small),
                 "numpy": lambda: _grouped(x).max(axis=2)}
        floor = Floor(stream([half[0], half[1]], [out_small]))
    else:
        call = lambda o: lambda: F.maxout_backward(dy_small, x, PIECES, out=o)  # noqa: E731

        def numpy_backward():
            g = _grouped(x)
            dx = np.zeros_like(g)
            np.put_along_axis(dx, g.argmax(axis=2)[:, :, None], dy_small[:, :, None], axis=2)
            return dx.reshape(x.shape)

        impls = {"fastnn": call(None), "fastnn_out": call(out), "numpy": numpy_backward}
        halves = out.reshape(2, -1)
        floor = Floor(stream([half[0], half[1], dy_small], [halves[0], halves[1]]))
    if torch is not None:
        tx, tdy, tw = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(weight)
        if op == "prelu forward":
            impls["torch"] = lambda: torch.nn.functional.prelu(tx, tw)
        elif op == "prelu backward":
            def torch_backward():  # what autograd runs, then the weight's broadcast sum
                dx, dw = torch.ops.aten._prelu_kernel_backward(tdy, tx, tw.view(-1, 1, 1))
                return dx, dw.sum(dim=(0, 2, 3))
            impls["torch"] = torch_backward
        elif op == "maxout forward":
            impls["torch"] = lambda: _grouped(tx).amax(dim=2)
        else:  # autograd's scatter through the saved indices
            index = _grouped(tx).max(dim=2).indices.unsqueeze(2)
            g = torch.from_numpy(dy_small).unsqueeze(2)
            impls["torch"] = lambda: torch.zeros(_grouped(tx).shape).scatter_(2, index, g).view(tx.shape)
    impls["floor"] = floor
    return Built(impls, floor)


# --------------------------------------------------------------------------- dropout

def _dropout(direction, n, torch):
    x = _rng().standard_normal(n, dtype=np.float32)
    y, mask = np.empty_like(x), F.dropout_mask(n, P, seed=SEED)
    mask_out = np.empty_like(mask)
    rng = _rng(1)
    scale = np.float32(1 / (1 - P))
    if direction == "forward":
        impls = {"fastnn": lambda: F.dropout(x, P, seed=SEED),
                 "fastnn_out": lambda: F.dropout(x, P, seed=SEED, out=(y, mask_out)),
                 "numpy": lambda: x * (rng.random(n) >= P) / np.float32(1 - P)}
        if torch is not None:
            tx = torch.from_numpy(x)
            impls["torch"] = lambda: torch.nn.functional.dropout(tx, P, training=True)
        floor = Floor(stream([x], [y]), stream(writes=[mask_out]))

        def random_check(r):  # each element dropped or scaled
            got = np.asarray(r[0])
            assert np.all((got == 0) | (got == x * scale)), "dropout output is not 0 or x / (1 - p)"
            assert 0 < np.count_nonzero(got) < n
    else:
        keep = np.unpackbits(mask, bitorder="little", count=n).astype(bool)
        impls = {"fastnn": lambda: F.dropout_backward(x, mask, P),
                 "fastnn_out": lambda: F.dropout_backward(x, mask, P, out=y),
                 "numpy": lambda: x * keep / np.float32(1 - P)}
        if torch is not None:
            tx, tkeep = torch.from_numpy(x), torch.from_numpy(keep)
            impls["torch"] = lambda: torch.ops.aten.native_dropout_backward(tx, tkeep, 1 / (1 - P))
        impls["fastnn_regen"] = lambda: F.dropout_backward(x, None, P, seed=SEED, out=y)
        floor = Floor(stream([x], [y]), stream([mask]))
        random_check = None
    impls["floor"] = floor
    return Built(impls, floor, random_check=random_check)


# ------------------------------------------------------------------------ optimizers

# name: (class in fastnn.optim and torch.optim, keyword arguments, state arrays, torch has fused=True)
OPTIMIZERS = {
    "sgd_momentum": ("SGD", dict(lr=1e-3, momentum=0.9), 1, True),
    "adagrad": ("Adagrad", dict(lr=1e-2), 1, True),
    "rmsprop": ("RMSprop", dict(lr=1e-2), 1, False),
    "adam": ("Adam", dict(lr=1e-3), 2, True),
    "adamw": ("AdamW", dict(lr=1e-3), 2, True),
}


def split_sizes(total, layout):
    """'one': one array; 'mixed200': 200 of lognormal sizes (a few big matrices, many
    small vectors) with the same total."""
    if layout == "one":
        return [total]
    w = _rng(1).lognormal(0.0, 1.5, 200)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(np.int64)
    sizes[0] += total - sizes.sum()
    return [int(s) for s in sizes]


def _numpy_step(name, kw, ps, gs, states, t):
    lr = kw["lr"]
    if name == "sgd_momentum":
        for p, g, b in zip(ps, gs, states[0]):
            b *= kw["momentum"]
            b += g
            p -= lr * b
    elif name == "adagrad":
        for p, g, s in zip(ps, gs, states[0]):
            s += g * g
            p -= lr * g / (np.sqrt(s) + 1e-10)
    elif name == "rmsprop":
        for p, g, s in zip(ps, gs, states[0]):
            s *= 0.99
            s += 0.01 * g * g
            p -= lr * g / (np.sqrt(s) + 1e-8)
    else:
        t[0] += 1
        b1, b2 = 0.9, 0.999
        step_size = lr / (1 - b1 ** t[0])
        bc2_sqrt = (1 - b2 ** t[0]) ** 0.5
        for p, g, m, v in zip(ps, gs, states[0], states[1]):
            if name == "adamw":
                p *= 1 - lr * 1e-2
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / bc2_sqrt + 1e-8)


def _optim(name, layout, n, torch):
    from fastnn.nn import Parameter

    cls_name, kw, n_states, has_fused = OPTIMIZERS[name]
    cls = getattr(fastnn.optim, cls_name)
    sizes = split_sizes(n, layout)
    rng = _rng()
    datas = [rng.standard_normal(k, dtype=np.float32) for k in sizes]
    grads = [rng.standard_normal(k, dtype=np.float32) for k in sizes]
    impls, views = {}, {}

    def fastnn_step(key, skip):
        ps = [Parameter(d.copy()) for d in datas]
        for p, g in zip(ps, grads):
            p.grad = g
        impls[key] = cls(ps, **kw, skip_if_nonfinite=skip).step
        views[key] = lambda _: [p.data - d for p, d in zip(ps, datas)]

    def torch_step(key, flag):
        ts = [torch.from_numpy(d.copy()) for d in datas]
        for t_, g in zip(ts, grads):
            t_.grad = torch.from_numpy(g)
        impls[key] = getattr(torch.optim, cls_name)(ts, **kw, **{flag: True}).step
        views[key] = lambda _: [t_.numpy() - d for t_, d in zip(ts, datas)]

    fastnn_step("fastnn", False)
    nd = [d.copy() for d in datas]
    states = [[np.zeros_like(d) for d in datas] for _ in range(n_states)]
    t = [0]
    impls["numpy"] = lambda: _numpy_step(name, kw, nd, grads, states, t)
    views["numpy"] = lambda _: [p - d for p, d in zip(nd, datas)]
    if torch is not None:
        torch_step("torch", "fused" if has_fused else "foreach")
    fastnn_step("fastnn_skip", True)
    if torch is not None and has_fused:
        torch_step("torch_foreach", "foreach")
    # the gradient read; the parameter and each state read and written, one pass
    floor = Floor(stream([np.ones(n, np.float32)],
                         inplace=[np.ones(n, np.float32) for _ in range(1 + n_states)]))
    impls["floor"] = floor
    return Built(impls, floor, views)


# --------------------------------------------------------------------------- registry

def _specs():
    """(family, op, layout, make(n, torch), extras) for every case, family by family."""
    part = functools.partial
    for relu in (False, True):
        for op in ("forward_train", "forward_eval", "backward"):
            for layout in ("NCHW", "NHWC"):
                yield ("batch_norm", f"batch_norm{'_relu' if relu else ''} {op}", layout,
                       part(_batch_norm, op, relu, layout), ("fastnn_unfused",) if relu else ())
    for name in ACTIVATIONS:
        for direction in ("forward", "backward"):
            yield "activations", f"{name} {direction}", "flat", part(_activation, name, direction), ()
    for direction in ("forward", "backward"):
        yield ("softmax_cross_entropy", f"softmax_cross_entropy {direction}", "rows",
               part(_softmax_cross_entropy, direction), ())
    for op in ("prelu forward", "prelu backward", "maxout forward", "maxout backward"):
        yield "prelu_maxout", op, "NCHW", part(_prelu_maxout, op), ()
    for direction in ("forward", "backward"):
        yield ("dropout", f"dropout {direction}", "flat", part(_dropout, direction),
               ("fastnn_regen",) if direction == "backward" else ())
    for layout in ("one", "mixed200"):
        for name in OPTIMIZERS:
            yield ("optim", f"{name} step", layout, part(_optim, name, layout),
                   ("fastnn_skip", "torch_foreach") if OPTIMIZERS[name][3] else ("fastnn_skip",))


def cases(sizes):
    """Every case at each size (elements of the main array), size by size."""
    return [Case(family, op, layout, n, make, extras, has_out=family != "optim")
            for n in sizes for family, op, layout, make, extras in _specs()]


def select(all_cases, patterns):
    """The cases any of the patterns (fnmatch, against family, op name, op or the full
    name) matches. A pattern matching nothing is a ValueError naming what exists."""
    import fnmatch

    chosen = []
    for pat in patterns:
        hits = [c for c in all_cases if any(fnmatch.fnmatch(t, pat) for t in c.tokens())]
        if not hits:
            names = sorted({t for c in all_cases for t in c.tokens()[:2]})
            raise ValueError(f"no benchmark case matches {pat!r}; families and ops: {', '.join(names)}")
        chosen += [c for c in hits if c not in chosen]
    return [c for c in all_cases if c in chosen]
