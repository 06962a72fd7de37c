"""The functional API: ``fastnn.functional`` (alias ``fastnn.F``).

Every function takes NumPy arrays (CPU kernels) or CuPy arrays (CUDA kernels),
float32 or float64, all of one dtype, C-contiguous. ``out=`` takes one array (the
first result) or a tuple with an array or None per result; results are returned in
those arrays. Bad input raises TypeError or ValueError naming the argument, before
anything is written.
"""

import numbers
from collections import namedtuple

from . import _backend

__all__ = ["BatchNormOutput", "batch_norm_forward", "batch_norm_backward"]

BatchNormOutput = namedtuple("BatchNormOutput", ["y", "mean", "invstd"])
BatchNormOutput.__doc__ = "Result of batch_norm_forward: y, and the per-channel mean and invstd it used."


def _outs(out, names):
    """out=None | array | tuple of len(names) (entries array or None) -> tuple."""
    if out is None:
        return (None,) * len(names)
    if isinstance(out, (tuple, list)):
        if len(out) != len(names):
            raise ValueError(
                f"out must be an array or a tuple of {len(names)} entries "
                f"({', '.join(names)}), got a tuple of {len(out)}"
            )
        return tuple(out)
    return (out,) + (None,) * (len(names) - 1)


def _float(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def _axis(channel_axis):
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be an int, got {type(channel_axis).__name__}")
    return int(channel_axis)


def batch_norm_forward(x, weight, bias, running_mean, running_var, *, training=True,
                       momentum=0.1, eps=1e-5, channel_axis=1, out=None):
    """Batch normalization (Ioffe & Szegedy 2015), forward.

    x: (N, C, *spatial) with channel_axis=1, or (N, *spatial, C) with channel_axis=-1.
    weight, bias: (C,) or None (affine=False: ones, zeros).
    running_mean, running_var: (C,) or None. In training they are updated in place,
    as torch does: running = (1 - momentum) * running + momentum * batch, with the
    unbiased batch variance for running_var. In eval (training=False) they are used
    to normalize and are required.

    Returns BatchNormOutput(y, mean, invstd): mean and invstd (C,) are what y was
    normalized with (batch statistics in training, running ones in eval), in x's
    dtype; pass them to batch_norm_backward. y = (x - mean) * invstd * weight + bias,
    computed as ((x - mean) * s + bias) from the float64 mean, so |mean| >> std
    loses nothing.
    """
    y, mean, invstd = _outs(out, ("y", "mean", "invstd"))
    backend = _backend.select("batch_norm_forward", x=x, weight=weight, bias=bias,
                              running_mean=running_mean, running_var=running_var,
                              y=y, mean=mean, invstd=invstd)
    return BatchNormOutput(*backend.batch_norm_forward(
        x, weight, bias, running_mean, running_var, bool(training),
        _float(momentum, "momentum"), _float(eps, "eps"), _axis(channel_axis), y, mean, invstd))


def batch_norm_backward(dy, x, weight, mean, invstd, *, training=True, channel_axis=1, out=None):
    """Batch normalization, backward: returns (dx, dweight, dbias).

    dy, x: like the forward's x (x is the forward input). weight: (C,) or None (ones).
    mean, invstd: (C,), as returned by batch_norm_forward. training=True gives the
    gradient through the batch statistics; training=False the eval-mode gradient
    dx = dy * weight * invstd. dweight = sum(dy * xhat) and dbias = sum(dy) are always
    returned. In training, mean only has to be close: the batch mean is refined from x
    in the same pass, so a float32 mean's lost low bits cost nothing.
    out: dx alone, or (dx, dweight, dbias); dx may be dy or x (in place).
    """
    dx, dweight, dbias = _outs(out, ("dx", "dweight", "dbias"))
    backend = _backend.select("batch_norm_backward", x=x, dy=dy, weight=weight, mean=mean,
                              invstd=invstd, dx=dx, dweight=dweight, dbias=dbias)
    return backend.batch_norm_backward(dy, x, weight, mean, invstd, bool(training),
                                       _axis(channel_axis), dx, dweight, dbias)


# ---------------------------------------------------------------- activations
# name(x, ..., out=None) -> y and name_backward(dy, x, ..., out=None) -> dx = dy * f'(x),
# elementwise over any shape. out may be x in the forward (then the backward, which
# takes the forward input, can only be called for relu and leaky_relu with
# negative_slope >= 0, passing y as x: the result is the same), dy or x in the backward.

def _act(name, x, out, *params):
    backend = _backend.select(name, x=x, out=out)
    return getattr(backend, name)(x, *params, out)


def _act_backward(name, dy, x, out, *params):
    backend = _backend.select(name + "_backward", x=x, dy=dy, out=out)
    return getattr(backend, name + "_backward")(dy, x, *params, out)


def _approximate(approximate):
    if not isinstance(approximate, str):
        raise TypeError(f"approximate must be a str ('none' or 'tanh'), got {type(approximate).__name__}")
    return approximate


def relu(x, *, out=None):
    """max(x, 0). NaN stays NaN."""
    return _act("relu", x, out)


def relu_backward(dy, x, *, out=None):
    """dy where x > 0, else 0 (0 at x = 0, as PyTorch)."""
    return _act_backward("relu", dy, x, out)


def leaky_relu(x, negative_slope=0.01, *, out=None):
    """x if x > 0 else negative_slope * x."""
    return _act("leaky_relu", x, out, _float(negative_slope, "negative_slope"))


def leaky_relu_backward(dy, x, negative_slope=0.01, *, out=None):
    return _act_backward("leaky_relu", dy, x, out, _float(negative_slope, "negative_slope"))


def elu(x, alpha=1.0, *, out=None):
    """x if x > 0 else alpha * (exp(x) - 1), alpha of any sign."""
    return _act("elu", x, out, _float(alpha, "alpha"))


def elu_backward(dy, x, alpha=1.0, *, out=None):
    return _act_backward("elu", dy, x, out, _float(alpha, "alpha"))


def selu(x, *, out=None):
    """scale * elu(x, alpha), alpha = 1.6732632423543772848170429916717,
    scale = 1.0507009873554804934193349852946 (Klambauer et al. 2017)."""
    return _act("selu", x, out)


def selu_backward(dy, x, *, out=None):
    return _act_backward("selu", dy, x, out)


def gelu(x, approximate="none", *, out=None):
    """x * Phi(x) (approximate='none', with erf) or
    0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) (approximate='tanh')."""
    return _act("gelu", x, out, _approximate(approximate))


def gelu_backward(dy, x, approximate="none", *, out=None):
    return _act_backward("gelu", dy, x, out, _approximate(approximate))


def sigmoid(x, *, out=None):
    """1 / (1 + exp(-x))."""
    return _act("sigmoid", x, out)


def sigmoid_backward(dy, x, *, out=None):
    """dy * sigmoid(x) * sigmoid(-x) (accurate in the tails, unlike y * (1 - y))."""
    return _act_backward("sigmoid", dy, x, out)


def tanh(x, *, out=None):
    return _act("tanh", x, out)


def tanh_backward(dy, x, *, out=None):
    """dy * (1 - tanh(x)^2), computed as 4 e / (1 + e)^2 with e = exp(-2|x|)."""
    return _act_backward("tanh", dy, x, out)


def silu(x, *, out=None):
    """x * sigmoid(x) (swish)."""
    return _act("silu", x, out)


def silu_backward(dy, x, *, out=None):
    return _act_backward("silu", dy, x, out)


def softplus(x, beta=1.0, threshold=20.0, *, out=None):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (as PyTorch)."""
    return _act("softplus", x, out, _float(beta, "beta"), _float(threshold, "threshold"))


def softplus_backward(dy, x, beta=1.0, threshold=20.0, *, out=None):
    """dy * sigmoid(beta x), dy where beta x > threshold."""
    return _act_backward("softplus", dy, x, out, _float(beta, "beta"), _float(threshold, "threshold"))


def softmax_cross_entropy(logits, labels, *, out=None):
    """Softmax over each row of logits (N, K), then the mean over rows of the
    cross-entropy with integer labels (N,) (int32 or int64, each in [0, K)).

    Returns (loss, probs): loss a 0-d array of logits' dtype (summed in float64, rows
    in order), probs (N, K) the softmax. Stable for any finite logits (the row maximum
    is subtracted). out: the loss array alone, or (loss, probs), entries array or None.
    """
    loss, probs = _outs(out, ("loss", "probs"))
    backend = _backend.select("softmax_cross_entropy", logits=logits, labels=labels,
                              loss=loss, probs=probs)
    return backend.softmax_cross_entropy(logits, labels, loss, probs)


def softmax_cross_entropy_backward(probs, labels, *, out=None):
    """Gradient of the mean loss w.r.t. the logits: (probs - onehot(labels)) / N.
    out may be probs (in place)."""
    backend = _backend.select("softmax_cross_entropy_backward", probs=probs, labels=labels, out=out)
    return backend.softmax_cross_entropy_backward(probs, labels, out)


__all__ += [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "selu", "selu_backward", "gelu", "gelu_backward", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "silu", "silu_backward", "softplus", "softplus_backward",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
]
