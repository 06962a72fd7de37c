"""The elementwise activations (forward and backward) over a flat array, and softmax
cross-entropy over (N, K) logits for K = 1000, 10 and 2 classes, N from the size."""

import functools
import math

import numpy as np

import fastnn
from ..registry import Built, Case, Floor, rng, stream

F = fastnn.F
CLASSES = (1000, 10, 2)  # ImageNet, digits, a binary classifier

SELU_ALPHA, SELU_SCALE = 1.6732632423543772848170429916717, 1.0507009873554804934193349852946
K0, K1 = math.sqrt(2 / math.pi), 0.044715
ACTIVATIONS = ["relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "sigmoid", "tanh", "silu",
               "softplus"]


def np_erf(x):  # Abramowitz & Stegun 7.1.26 (NumPy has no erf); |error| < 1.5e-7
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
            "gelu": lambda: 0.5 * x * (1 + np_erf(x / f32(math.sqrt(2)))),
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
        "gelu": lambda: dy * (0.5 * (1 + np_erf(x / f32(math.sqrt(2))))
                              + x * np.exp(-0.5 * x * x) / f32(math.sqrt(2 * math.pi))),
        "gelu_tanh": gelu_tanh,
        "sigmoid": lambda: dy * _np_sigmoid(x) * (1 - _np_sigmoid(x)),
        "tanh": lambda: dy * (1 - np.tanh(x) ** 2),
        "silu": silu,
        "softplus": lambda: np.where(x > 20, dy, dy * _np_sigmoid(x)),
    }[name]


def _torch_activation(torch, name, direction, x, dy):
    """PyTorch's call as a user makes it (the functional API; for a backward, what
    autograd runs: aten's *_backward)."""
    tf = torch.nn.functional
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
    op, args, kw = _torch_backward_op(torch, name, tx, tdy)
    return lambda: op.default(*args, **kw)


def _torch_backward_op(torch, name, tx, tdy):
    """aten's backward of the activation, its arguments (dy first) and keywords."""
    aten = torch.ops.aten
    if name in ("sigmoid", "tanh"):  # torch's backward takes the forward's result
        return getattr(aten, name + "_backward"), (tdy, getattr(torch, name)(tx)), {}
    op, args = {
        "relu": (aten.threshold_backward, (tdy, tx, 0)),
        "leaky_relu": (aten.leaky_relu_backward, (tdy, tx, 0.01, False)),
        "elu": (aten.elu_backward, (tdy, 1.0, 1.0, 1.0, False, tx)),
        "selu": (aten.elu_backward, (tdy, SELU_ALPHA, SELU_SCALE, 1.0, False, tx)),
        "gelu": (aten.gelu_backward, (tdy, tx)),
        "gelu_tanh": (aten.gelu_backward, (tdy, tx)),
        "silu": (aten.silu_backward, (tdy, tx)),
        "softplus": (aten.softplus_backward, (tdy, tx, 1.0, 20.0)),
    }[name]
    return op, args, {"approximate": "tanh"} if name == "gelu_tanh" else {}


def _torch_activation_out(torch, name, direction, x, dy, out):
    """The same op writing into a preallocated tensor: aten's out= overload (the one
    every PyTorch activation has; selu is elu with its constants, as torch.selu runs)."""
    aten = torch.ops.aten
    tx, tdy, o = (torch.from_numpy(a) for a in (x, dy, out))
    if direction == "backward":
        op, args, kw = _torch_backward_op(torch, name, tx, tdy)
        return lambda: op.grad_input(*args, **kw, grad_input=o)
    op, args, kw = {
        "relu": (aten.relu, (tx,), {}),
        "leaky_relu": (aten.leaky_relu, (tx, 0.01), {}),
        "elu": (aten.elu, (tx,), {}),
        "selu": (aten.elu, (tx, SELU_ALPHA, SELU_SCALE), {}),
        "gelu": (aten.gelu, (tx,), {}),
        "gelu_tanh": (aten.gelu, (tx,), {"approximate": "tanh"}),
        "sigmoid": (aten.sigmoid, (tx,), {}),
        "tanh": (aten.tanh, (tx,), {}),
        "silu": (aten.silu, (tx,), {}),
        "softplus": (aten.softplus, (tx,), {}),
    }[name]
    return lambda: op.out(*args, **kw, out=o)


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
        impls["torch_out"] = _torch_activation_out(torch, name, direction, x, dy, np.empty_like(x))
    impls["floor"] = floor
    return Built(impls, floor)


def _softmax_cross_entropy(direction, classes, n, torch):
    gen = rng(1)
    rows = max(1, n // classes)
    logits = gen.standard_normal((rows, classes), dtype=np.float32) * 3
    labels = gen.integers(0, classes, rows)
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
        src = logits
    else:
        call = lambda o: lambda: F.softmax_cross_entropy_backward(probs, labels, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call(out)}

        def numpy_backward():
            g = probs / rows
            g[rows_i, labels] -= 1 / rows
            return g

        impls["numpy"] = numpy_backward
        src = probs
    # the labels (int64) are as many bytes as the logits at K = 2
    floor = Floor(stream([src], [out]), stream([labels]))
    if torch is not None:
        aten = torch.ops.aten
        tl, tlab = torch.from_numpy(logits), torch.from_numpy(labels)
        t_out = torch.from_numpy(np.empty_like(logits))
        if direction == "forward":
            impls["torch"] = lambda: torch.nn.functional.cross_entropy(tl, tlab)

            def torch_forward_out():  # what cross_entropy runs, log_softmax into t_out
                aten._log_softmax.out(tl, 1, False, out=t_out)
                return aten.nll_loss_forward(t_out, tlab, None, 1, -100)[0]

            impls["torch_out"] = torch_forward_out
        else:  # what autograd runs: nll_loss's gradient (set up here), then log_softmax's
            logp = torch.log_softmax(tl, 1)
            g = aten.nll_loss_backward(torch.tensor(1.0), logp, tlab, None, 1, -100,
                                       torch.tensor(float(rows)))
            impls["torch"] = lambda: aten._log_softmax_backward_data(g, logp, 1, torch.float32)
            impls["torch_out"] = lambda: aten._log_softmax_backward_data.out(
                g, logp, 1, torch.float32, out=t_out)
    impls["floor"] = floor
    return Built(impls, floor)


def cases():
    part = functools.partial
    for name in ACTIVATIONS:
        for direction in ("forward", "backward"):
            yield Case("activations", f"{name} {direction}", "flat", part(_activation, name, direction),
                       torch_out=True)
    for classes in CLASSES:
        for direction in ("forward", "backward"):
            yield Case("softmax_cross_entropy", f"softmax_cross_entropy {direction}", f"K={classes}",
                       part(_softmax_cross_entropy, direction, classes), torch_out=True)
