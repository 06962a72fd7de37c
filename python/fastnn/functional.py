"""The functional API: ``fastnn.functional`` (alias ``fastnn.F``).

Every function takes NumPy arrays (CPU kernels) or CuPy arrays (CUDA kernels),
float32 or float64, all of one dtype, C-contiguous; a ``fastnn.nn.Parameter`` is taken
wherever an array is (its ``.data`` is used). ``out=`` takes one array (the
first result) or a tuple with an array or None per result; results are returned in
those arrays. Bad input raises TypeError or ValueError naming the argument, before
anything is written.
"""

import functools
import numbers
import types
from collections import namedtuple

import numpy as np

from . import _backend
from ._checks import check_bool as _flag
from . import random as _random

__all__ = ["BatchNormOutput", "batch_norm_forward", "batch_norm_backward",
           "prelu", "prelu_backward", "maxout", "maxout_backward"]

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
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"{name} must be a finite number, got {value!r}") from None


def _out(out):
    """out= of a function with one result: None, an array, or a tuple of one entry."""
    return _outs(out, ("out",))[0]


def _axis(channel_axis):
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, numbers.Integral):
        raise TypeError(f"channel_axis must be an int, got {type(channel_axis).__name__}")
    return int(channel_axis)


def _activation(activation):
    """None | 'relu' -> the native argument ('' or 'relu')."""
    if activation is None:
        return ""
    if isinstance(activation, str) and activation == "relu":
        return "relu"
    raise ValueError(f"activation must be None or 'relu', got {activation!r}")


def batch_norm_forward(x, weight, bias, running_mean, running_var, *, training=True,
                       momentum=0.1, eps=1e-5, channel_axis=1, activation=None,
                       num_batches_tracked=None, out=None):
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

    activation='relu' fuses a ReLU into the same pass: y = relu(that) (+0 for values
    < 0, -0 and NaN kept), bitwise what the two steps give. mean and invstd are
    the batch norm's as before; keep y for batch_norm_backward(..., activation='relu').

    num_batches_tracked: None, or the count of batches the running statistics have
    seen, a 0-d int64 array (BatchNorm's buffer of that name); training with running
    statistics adds 1 to it in place, after the update, as the layers do.
    momentum=None: the running statistics are the cumulative (equal-weight) average of
    every batch's statistics, torch's BatchNorm(momentum=None): this batch counts with
    weight 1 / (num_batches_tracked + 1). torch's functional batch_norm has no count and
    refuses momentum=None; here the count is passed, so the functional form and the
    layers agree. Training with running statistics and momentum=None without
    num_batches_tracked is a ValueError; in eval, or without running statistics,
    momentum is not used and None is fine.
    """
    y, mean, invstd = _outs(out, ("y", "mean", "invstd"))
    tracking = _flag(training, "training") and (running_mean is not None or running_var is not None)
    if num_batches_tracked is not None:
        _check_count(num_batches_tracked, (x, weight, bias, running_mean, running_var, y, mean, invstd))
    if momentum is None:
        if tracking and num_batches_tracked is None:
            raise ValueError("momentum=None (the cumulative average of the batch statistics) needs "
                             "num_batches_tracked, the count of batches seen so far")
        momentum = 1.0 / (_count(num_batches_tracked) + 1) if tracking else 0.0
    backend = _backend.select("batch_norm_forward", x=x, weight=weight, bias=bias,
                              running_mean=running_mean, running_var=running_var,
                              y=y, mean=mean, invstd=invstd)
    result = BatchNormOutput(*backend.batch_norm_forward(
        x, weight, bias, running_mean, running_var, training,
        _float(momentum, "momentum"), _float(eps, "eps"), _axis(channel_axis),
        _activation(activation), y, mean, invstd))
    if tracking and num_batches_tracked is not None:
        num_batches_tracked += 1
    return result


def _check_count(count, arrays):
    """num_batches_tracked: a writeable 0-d int64 array apart from every other array of
    the call (it is incremented after the kernel wrote them)."""
    if not (isinstance(count, np.ndarray) or hasattr(count, "__cuda_array_interface__")):
        raise TypeError(f"num_batches_tracked must be a 0-d int64 array or None, got {type(count).__name__}")
    if isinstance(count, np.ma.MaskedArray):
        raise TypeError("num_batches_tracked is a numpy.ma.MaskedArray; pass a plain 0-d int64 array")
    if count.dtype != np.int64:
        raise TypeError(f"num_batches_tracked must have dtype int64, got {count.dtype}")
    if count.shape != ():
        raise ValueError(f"num_batches_tracked must have shape (), got {count.shape}")
    if isinstance(count, np.ndarray) and not count.flags.writeable:
        raise ValueError("num_batches_tracked is read-only; it is incremented in place")
    if isinstance(count, np.ndarray):
        xp, same_library = np, lambda a: isinstance(a, np.ndarray)
    else:
        import cupy as xp
        same_library = lambda a: isinstance(a, xp.ndarray)  # noqa: E731
    for a in arrays:
        if same_library(a) and xp.may_share_memory(count, a):
            raise ValueError("num_batches_tracked overlaps another array of the call in memory; "
                             "it must be an array of its own")


def _count(count):
    """The value of num_batches_tracked (checked by _check_count): an int >= 0."""
    value = int(count)
    if value < 0:
        raise ValueError(f"num_batches_tracked must be >= 0, got {value}")
    return value


def batch_norm_backward(dy, x, weight, mean, invstd, *, training=True, channel_axis=1,
                        activation=None, y=None, out=None):
    """Batch normalization, backward: returns (dx, dweight, dbias).

    dy, x: like the forward's x (x is the forward input). weight: (C,) or None (ones).
    mean, invstd: (C,), as returned by batch_norm_forward. training=True gives the
    gradient through the batch statistics; training=False the eval-mode gradient
    dx = dy * weight * invstd. dweight = sum(dy * xhat) and dbias = sum(dy) are always
    returned. In training, mean only has to be close: the batch mean is refined from x
    in the same pass, so a float32 mean's lost low bits cost nothing.
    activation='relu': the backward of batch_norm_forward(..., activation='relu');
    y (required) is that forward's output, and dy only counts where y > 0, exactly the
    forward's mask (the same as batch_norm_backward(dy * (y > 0), x, ...), bitwise).
    out: dx alone, or (dx, dweight, dbias); dx may be dy, x or y (in place).
    """
    dx, dweight, dbias = _outs(out, ("dx", "dweight", "dbias"))
    backend = _backend.select("batch_norm_backward", x=x, dy=dy, weight=weight, mean=mean,
                              invstd=invstd, y=y, dx=dx, dweight=dweight, dbias=dbias)
    return backend.batch_norm_backward(dy, x, weight, mean, invstd, training,
                                       _axis(channel_axis), _activation(activation), y,
                                       dx, dweight, dbias)


# ------------------------------------------------------------------------- dropout

__all__ += ["DropoutOutput", "dropout", "dropout_backward", "dropout_mask"]

DropoutOutput = namedtuple("DropoutOutput", ["y", "mask"])
DropoutOutput.__doc__ = "Result of dropout: y, and the bit-packed uint8 keep mask."


def dropout(x, p=0.5, *, seed=None, offset=0, training=True, generator=None, out=None):
    """Inverted dropout: returns DropoutOutput(y, mask).

    Each element is zeroed with probability p and the kept ones are scaled by
    1 / (1 - p), so E[y] = x. The keep mask follows the rule in docs/design.md:
    element i is kept iff word i % 4 of Philox4x32-10(key=seed, counter=(i // 4,
    offset)) is >= round(p * 2**32); it is the same for any thread count, SIMD level or
    device.
    mask: uint8, (x.size + 7) // 8 bytes, element i is bit i % 8 of byte i // 8
    (numpy.packbits(keep, bitorder='little')); bits past x.size are 0.

    seed, offset: ints in [0, 2**64 - 1]. seed=None draws (seed, offset) from
    ``generator`` (default: ``fastnn.random.default_generator``), which moves on by
    ceil(x.size / 4), once every argument has passed its checks: a refused call moves
    no generator. y = x * (scale or 0): NaN and inf stay NaN, as in PyTorch.
    p = 0 and training=False: y is x (copied), mask all ones, no generator run (eval
    draws nothing). p = 1: y = x * 0, mask all zeros.
    out: y alone or (y, mask); y may be x (in place).
    """
    y, mask, _, _ = _dropout(x, p, seed, offset, training, generator, out)
    return DropoutOutput(y, mask)


def _no_offset(offset):
    """offset left at its default (the int 0): it goes with an explicit seed only."""
    return isinstance(offset, numbers.Integral) and not isinstance(offset, bool) and offset == 0


def _dropout(x, p, seed, offset, training, generator, out):
    """dropout's work: returns (y, mask, seed, offset), the counter the mask was made at
    (the Dropout layer keeps it to regenerate the mask). With seed None the native call
    draws from the generator after its checks, so a refused call draws nothing."""
    y, mask = _outs(out, ("y", "mask"))
    if seed is None:
        if not _no_offset(offset):
            raise ValueError("offset is given but seed is None; pass both, or neither "
                             "to draw them from the generator")
        if generator is None:
            generator = _random.default_generator
        elif not isinstance(generator, _random.Generator):
            raise TypeError(f"generator must be a fastnn.random.Generator or None, got "
                            f"{type(generator).__name__}")
    elif generator is not None:
        raise ValueError("pass seed (and offset) or generator, not both")
    backend = _backend.select("dropout", x=x, y=y, mask=mask)
    return backend.dropout(x, _float(p, "p"), seed, offset, training, y, mask, generator)


def dropout_backward(dy, mask, p, *, seed=None, offset=0, out=None):
    """Dropout backward: dx = dy * (1 / (1 - p) where kept, else 0).

    mask: the forward's mask, or None to regenerate it from (seed, offset) (both as
    given to dropout, which must then have been called with an explicit seed); the
    regenerated mask is never stored. p = 1 gives dy * 0. out: dx, which may be dy.
    """
    (dx,) = _outs(out, ("dx",))
    p = _float(p, "p")
    if mask is None:
        if seed is None:
            raise ValueError("mask is None: pass the forward's seed (and offset) to regenerate it")
        seed, offset = _random.check_u64(seed, "seed"), _random.check_u64(offset, "offset")
    elif seed is not None or not _no_offset(offset):
        raise ValueError("pass mask or seed/offset, not both")
    else:
        seed, offset = 0, 0
    backend = _backend.select("dropout_backward", dy=dy, mask=mask, dx=dx)
    return backend.dropout_backward(dy, mask, p, seed, offset, dx)


def dropout_mask(n, p, *, seed, offset=0, out=None):
    """The keep mask dropout(x, p, seed=seed, offset=offset) makes for x.size == n.

    uint8, (n + 7) // 8 bytes, bit i % 8 of byte i // 8 is element i. out: a uint8
    array of that shape.
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    p = _float(p, "p")
    seed, offset = _random.check_u64(seed, "seed"), _random.check_u64(offset, "offset")
    out = _out(out)
    backend = _backend.select("dropout_mask", mask=out)
    return backend.dropout_mask(int(n), p, seed, offset, out)


def _pieces(pieces):
    if isinstance(pieces, bool) or not isinstance(pieces, numbers.Integral):
        raise TypeError(f"pieces must be an int, got {type(pieces).__name__}")
    return int(pieces)


def prelu(x, weight, channel_axis=1, out=None):
    """PReLU (He et al. 2015): y = x if x > 0 else weight * x.

    weight: (1,) (one slope for every element, any shape of x, 1-D included) or (C,)
    along channel_axis (1: (N, C, ...), -1: (..., C)). out may be x (in place).
    """
    out = _out(out)
    backend = _backend.select("prelu", x=x, weight=weight, y=out)
    return backend.prelu(x, weight, _axis(channel_axis), out)


def prelu_backward(dy, x, weight, channel_axis=1, out=None):
    """PReLU backward: returns (dx, dweight).

    dx = dy if x > 0 else weight * dy; dweight (weight's shape) = the sum of x * dy over
    x <= 0 and every axis but the channel's, accumulated in float64 in a fixed order
    (bitwise the same for any thread count). out: dx alone, or (dx, dweight); dx may be
    dy or x (in place).
    """
    dx, dweight = _outs(out, ("dx", "dweight"))
    backend = _backend.select("prelu_backward", x=x, dy=dy, weight=weight, dx=dx, dweight=dweight)
    return backend.prelu_backward(dy, x, weight, _axis(channel_axis), dx, dweight)


def maxout(x, pieces, channel_axis=1, out=None):
    """Maxout (Goodfellow et al. 2013): the maximum over groups of `pieces` consecutive
    channels; C must be divisible by pieces, the result has C // pieces channels.

    A NaN in a group makes its output NaN (as torch.max does). out can't be x.
    """
    out = _out(out)
    backend = _backend.select("maxout", x=x, y=out)
    return backend.maxout(x, _pieces(pieces), _axis(channel_axis), out)


def maxout_backward(dy, x, pieces, channel_axis=1, out=None):
    """Maxout backward: dx (x's shape) is dy at each group's winner and 0 elsewhere.

    The winner is the first NaN of the group if it has one, else the first piece equal
    to the maximum (ties go to the lowest index). dy has the forward output's shape.
    out may be x (in place).
    """
    out = _out(out)
    backend = _backend.select("maxout_backward", x=x, dy=dy, dx=out)
    return backend.maxout_backward(dy, x, _pieces(pieces), _axis(channel_axis), out)


# ---------------------------------------------------------------- activations
# name(x, ..., out=None) -> y and name_backward(dy, x, ..., out=None) -> dx = dy * f'(x),
# elementwise over any shape. out may be x in the forward (then the backward, which
# takes the forward input, can only be called for relu and leaky_relu with
# negative_slope >= 0, passing y as x: the result is the same), dy or x in the backward.

def _act(name, x, out, *params):
    out = _out(out)
    backend = _backend.select(name, x=x, out=out)
    return getattr(backend, name)(x, *params, out)


def _act_backward(name, dy, x, out, *params):
    out = _out(out)
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


def _label_args(backend, check_labels):
    """The CUDA module's extra argument: whether to check device labels before the kernel."""
    return () if backend is _backend._cpu else (check_labels,)


def softmax_cross_entropy(logits, labels, *, check_labels=False, out=None):
    """Softmax over each row of logits (N, K), then the mean over rows of the
    cross-entropy with integer labels (N,) (int32 or int64, each in [0, K)).

    Returns (loss, probs): loss a 0-d array of logits' dtype (summed in float64, rows
    in order), probs (N, K) the softmax. Stable for any finite logits (the row maximum
    is subtracted). out: the loss array alone, or (loss, probs), entries array or None.

    Labels out of range: NumPy labels are always checked first (ValueError naming the
    first bad one, nothing written). GPU labels live on the device, where a check means
    waiting for the GPU: with check_labels=True a kernel finds the first bad label, the
    call waits for it and raises the same ValueError before anything is written;
    without it nothing waits, and a bad label's row gets a NaN loss (so the mean loss
    is NaN) and a NaN gradient row; no memory outside logits is ever read.
    """
    check_labels = _flag(check_labels, "check_labels")
    loss, probs = _outs(out, ("loss", "probs"))
    backend = _backend.select("softmax_cross_entropy", logits=logits, labels=labels,
                              loss=loss, probs=probs)
    return backend.softmax_cross_entropy(logits, labels, loss, probs, *_label_args(backend, check_labels))


def softmax_cross_entropy_backward(probs, labels, *, check_labels=False, out=None):
    """Gradient of the mean loss w.r.t. the logits: (probs - onehot(labels)) / N.
    out may be probs (in place). check_labels: as for softmax_cross_entropy."""
    out = _out(out)
    check_labels = _flag(check_labels, "check_labels")
    backend = _backend.select("softmax_cross_entropy_backward", probs=probs, labels=labels, out=out)
    return backend.softmax_cross_entropy_backward(probs, labels, out, *_label_args(backend, check_labels))


__all__ += [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward", "elu", "elu_backward",
    "selu", "selu_backward", "gelu", "gelu_backward", "sigmoid", "sigmoid_backward",
    "tanh", "tanh_backward", "silu", "silu_backward", "softplus", "softplus_backward",
    "softmax_cross_entropy", "softmax_cross_entropy_backward",
]


# ------------------------------------------------------------------- softmax

def _float_array(x, name):
    """The array module of x (numpy or cupy); TypeError unless x is a float32/float64 array."""
    if isinstance(x, np.ma.MaskedArray):
        raise TypeError(f"{name} is a numpy.ma.MaskedArray; fastnn would ignore its mask, so it is "
                        "refused (pass its .filled(value), or its .data to drop the mask)")
    if isinstance(x, np.ndarray):
        xp = np
    elif hasattr(x, "__cuda_array_interface__"):
        import cupy as xp
    else:
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must have dtype float32 or float64, got {x.dtype}")
    return xp


def _dim(x, dim):
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"dim must be an int, got {type(dim).__name__}")
    if not -max(x.ndim, 1) <= dim < max(x.ndim, 1):
        raise ValueError(f"dim must be in [-{max(x.ndim, 1)}, {max(x.ndim, 1)}) for x of shape {x.shape}, got {dim}")
    return int(dim) if x.ndim else -1


def _softmax_parts(x, dim):
    """(xp, x as at least 1-D, dim): a 0-d x is one row of one element (as torch)."""
    xp = _float_array(x, "x")
    dim = _dim(x, dim)
    return xp, (x.reshape(1) if x.ndim == 0 else x), dim


def softmax(x, dim=-1):
    """exp(x) / sum(exp(x)) along dim, computed as exp(x - max) / sum(exp(x - max)), so any
    finite x is safe. A row holding NaN gives NaN. Returns a new array of x's dtype and
    shape (a 0-d x gives 1, an empty x an empty result)."""
    xp, rows, dim = _softmax_parts(x, dim)
    if x.size == 0:
        return xp.empty(x.shape, x.dtype)
    e = xp.exp(rows - rows.max(axis=dim, keepdims=True))
    e /= e.sum(axis=dim, keepdims=True)
    return e.reshape(x.shape)


def log_softmax(x, dim=-1):
    """log(softmax(x)) along dim, as (x - max) - log(sum(exp(x - max))): accurate where
    softmax underflows to 0 (log_softmax stays finite)."""
    xp, rows, dim = _softmax_parts(x, dim)
    if x.size == 0:
        return xp.empty(x.shape, x.dtype)
    shifted = rows - rows.max(axis=dim, keepdims=True)
    shifted -= xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
    return shifted.reshape(x.shape)


__all__ += ["softmax", "log_softmax"]


# ------------------------------------------------------- Parameters as arrays
# Every public function takes a fastnn.nn.Parameter wherever it takes an array (its
# .data), also inside out=(...). Done here, once, around each function. The layers,
# which always pass arrays, call the unwrapped functions (``raw``) and skip that step.

def _unwrap(value, parameter):
    if isinstance(value, parameter):
        return value.data
    if isinstance(value, tuple) or (isinstance(value, list) and any(isinstance(v, parameter) for v in value)):
        return type(value)(v.data if isinstance(v, parameter) else v for v in value)  # out=(...)
    return value


def _accepting_parameters(fn, parameter):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return fn(*[_unwrap(a, parameter) for a in args],
                  **{k: _unwrap(v, parameter) for k, v in kwargs.items()})
    return call


_FUNCTIONS = [name for name in __all__ if name not in ("BatchNormOutput", "DropoutOutput")]
raw = types.SimpleNamespace(**{name: globals()[name] for name in _FUNCTIONS})

from .nn.parameter import Parameter  # noqa: E402 (after raw: fastnn.nn's layers import it)

for _name in _FUNCTIONS:
    globals()[_name] = _accepting_parameters(globals()[_name], Parameter)
del _name
