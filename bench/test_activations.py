"""Activations and softmax cross-entropy: fastnn vs NumPy vs PyTorch CPU vs the memory floor.

Each group (op, direction, size), float32, holds:
  fastnn       the default call (a fresh result)
  fastnn_out   the same call writing into out=
  numpy        what a user writes in NumPy (erf by Abramowitz & Stegun 7.1.26, NumPy has none)
  torch        torch.nn.functional / aten's *_backward (if torch is installed)
  floor        a native streaming loop over the same arrays: a copy of x for the forward
               (x read, y written), out = a + b for the backward (dy and x read, dx written)

NumPy at 64M elements takes seconds per call (tanh-GELU about 6 s), so it runs one round.
"""

import math

import numpy as np
import pytest

import fastnn

F = fastnn.F
SIZES = {"1M": 1 << 20, "64M": 64 << 20}
IMPLS = ["fastnn", "fastnn_out", "numpy", "torch", "floor"]
SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
K0, K1 = math.sqrt(2 / math.pi), 0.044715

# name -> (fastnn forward, fastnn backward, params)
OPS = {
    "relu": (F.relu, F.relu_backward, ()),
    "leaky_relu": (F.leaky_relu, F.leaky_relu_backward, (0.01,)),
    "elu": (F.elu, F.elu_backward, (1.0,)),
    "selu": (F.selu, F.selu_backward, ()),
    "gelu": (F.gelu, F.gelu_backward, ("none",)),
    "gelu_tanh": (F.gelu, F.gelu_backward, ("tanh",)),
    "sigmoid": (F.sigmoid, F.sigmoid_backward, ()),
    "tanh": (F.tanh, F.tanh_backward, ()),
    "silu": (F.silu, F.silu_backward, ()),
    "softplus": (F.softplus, F.softplus_backward, (1.0, 20.0)),
}

_arrays = {}


def arrays(size):
    """x, dy and an output array of `size` float32 values, made once per session."""
    if size not in _arrays:
        rng = np.random.default_rng(0)
        n = SIZES[size]
        _arrays[size] = (rng.standard_normal(n, dtype=np.float32) * 3,
                         rng.standard_normal(n, dtype=np.float32), np.empty(n, np.float32))
    return _arrays[size]


def np_erf(x):
    t = 1 / (1 + 0.3275911 * np.abs(x))
    p = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return np.sign(x) * (1 - p * np.exp(-x * x))


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def numpy_call(name, direction, x, dy):
    fwd = {
        "relu": lambda: np.maximum(x, 0),
        "leaky_relu": lambda: np.where(x > 0, x, np.float32(0.01) * x),
        "elu": lambda: np.where(x > 0, x, np.expm1(x)),
        "selu": lambda: np.float32(SELU_SCALE) * np.where(x > 0, x, np.float32(SELU_ALPHA) * np.expm1(x)),
        "gelu": lambda: 0.5 * x * (1 + np_erf(x / np.float32(math.sqrt(2)))),
        "gelu_tanh": lambda: 0.5 * x * (1 + np.tanh(np.float32(K0) * (x + np.float32(K1) * x**3))),
        "sigmoid": lambda: np_sigmoid(x),
        "tanh": lambda: np.tanh(x),
        "silu": lambda: x * np_sigmoid(x),
        "softplus": lambda: np.where(x > 20, x, np.log1p(np.exp(x))),
    }

    def gelu_tanh_bwd():
        t = np.tanh(np.float32(K0) * (x + np.float32(K1) * x**3))
        dz = np.float32(K0) * (1 + np.float32(3 * K1) * x * x)
        return dy * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dz)

    def silu_bwd():
        s = np_sigmoid(x)
        return dy * s * (1 + x * (1 - s))

    bwd = {
        "relu": lambda: dy * (x > 0),
        "leaky_relu": lambda: np.where(x > 0, dy, dy * np.float32(0.01)),
        "elu": lambda: np.where(x > 0, dy, dy * np.exp(x)),
        "selu": lambda: np.float32(SELU_SCALE) * np.where(x > 0, dy, dy * np.float32(SELU_ALPHA) * np.exp(x)),
        "gelu": lambda: dy * (0.5 * (1 + np_erf(x / np.float32(math.sqrt(2))))
                              + x * np.exp(-0.5 * x * x) / np.float32(math.sqrt(2 * math.pi))),
        "gelu_tanh": gelu_tanh_bwd,
        "sigmoid": lambda: dy * np_sigmoid(x) * (1 - np_sigmoid(x)),
        "tanh": lambda: dy * (1 - np.tanh(x) ** 2),
        "silu": silu_bwd,
        "softplus": lambda: np.where(x > 20, dy, dy * np_sigmoid(x)),
    }
    return (fwd if direction == "forward" else bwd)[name]


def torch_call(name, direction, x, dy):
    torch = pytest.importorskip("torch")
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
        y = torch.sigmoid(tx) if name == "sigmoid" else torch.tanh(tx)
        op = aten.sigmoid_backward if name == "sigmoid" else aten.tanh_backward
        return lambda: op(tdy, y)
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


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("direction", ["forward", "backward"])
@pytest.mark.parametrize("name", list(OPS))
def test_activation(benchmark, name, direction, size, impl):
    x, dy, out = arrays(size)
    fwd, bwd, params = OPS[name]
    benchmark.group = f"{name} {direction} {size} float32"
    if impl in ("fastnn", "fastnn_out"):
        o = out if impl == "fastnn_out" else None
        fn = (lambda: fwd(x, *params, out=o)) if direction == "forward" else (
            lambda: bwd(dy, x, *params, out=o))
    elif impl == "numpy":
        fn = numpy_call(name, direction, x, dy)
    elif impl == "torch":
        fn = torch_call(name, direction, x, dy)
    elif direction == "forward":
        fn = lambda: fastnn._cpu.stream_copy(x, out)
    else:
        fn = lambda: fastnn._cpu.stream_add(dy, x, out)
    big = size == "64M"
    if impl == "numpy" and big:
        benchmark.pedantic(fn, rounds=1, warmup_rounds=0)
    else:
        benchmark.pedantic(fn, rounds=5 if big else 30, warmup_rounds=1)


XENT_SHAPE = (8192, 1000)


@pytest.mark.parametrize("impl", ["fastnn", "numpy", "torch"])
@pytest.mark.parametrize("direction", ["forward", "backward"])
def test_softmax_cross_entropy(benchmark, direction, impl):
    rng = np.random.default_rng(1)
    n, k = XENT_SHAPE
    logits = rng.standard_normal(XENT_SHAPE, dtype=np.float32) * 3
    labels = rng.integers(0, k, n)
    _, probs = F.softmax_cross_entropy(logits, labels)
    benchmark.group = f"softmax_cross_entropy {direction} {n}x{k} float32"
    if impl == "fastnn":
        fn = (lambda: F.softmax_cross_entropy(logits, labels)) if direction == "forward" else (
            lambda: F.softmax_cross_entropy_backward(probs, labels))
    elif impl == "numpy":
        def fn():
            if direction == "backward":
                g = probs / n
                g[np.arange(n), labels] -= 1 / n
                return g
            z = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(z)
            s = e.sum(axis=1, keepdims=True)
            loss = np.mean(np.log(s[:, 0]) - z[np.arange(n), labels])
            return loss, e / s
    else:
        torch = pytest.importorskip("torch")
        tl, tlab = torch.from_numpy(logits), torch.from_numpy(labels)
        if direction == "forward":
            fn = lambda: torch.nn.functional.cross_entropy(tl, tlab)
        else:
            logp = torch.log_softmax(tl, 1)
            g = torch.ops.aten.nll_loss_backward(torch.tensor(1.0), logp, tlab, None, 1, -100,
                                                 torch.tensor(float(n)))
            fn = lambda: torch.ops.aten._log_softmax_backward_data(g, logp, 1, torch.float32)
    benchmark.pedantic(fn, rounds=20, warmup_rounds=2)
