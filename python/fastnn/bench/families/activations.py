"""The elementwise activations (forward and backward) over a flat array, and softmax
cross-entropy over (N, 1000) logits, N from the size."""

import functools
import math

import numpy as np

import fastnn
from ..registry import Built, Case, Floor, rng, stream

F = fastnn.F
CLASSES = 1000

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
    gen = rng()
    x = gen.standard_normal(n, dtype=np.float32) * 3
    dy = gen.standard_normal(n, dtype=np.float32)
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
    gen = rng(1)
    rows = max(1, n // CLASSES)
    logits = gen.standard_normal((rows, CLASSES), dtype=np.float32) * 3
    labels = gen.integers(0, CLASSES, rows)
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


def cases():
    part = functools.partial
    for name in ACTIVATIONS:
        for direction in ("forward", "backward"):
            yield Case("activations", f"{name} {direction}", "flat", part(_activation, name, direction))
    for direction in ("forward", "backward"):
        yield Case("softmax_cross_entropy", f"softmax_cross_entropy {direction}", "rows",
                   part(_softmax_cross_entropy, direction))
