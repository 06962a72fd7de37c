"""Weight initializers with torch.nn.init's names and formulas (``fastnn.init``).

Each fills an array or a ``Parameter`` in place and returns it. Random ones take
``generator``: a ``numpy.random.Generator`` (seeded by you, e.g.
``numpy.random.default_rng(0)``), or None for one seeded from ``fastnn.random``'s global
generator, so ``fastnn.random.seed(s)`` makes a model's initialization reproducible.
Samples are drawn in float64 and rounded to the array's dtype.

Fans: for a weight of shape (out, in, *kernel), ``fan_in = in * prod(kernel)`` and
``fan_out = out * prod(kernel)`` (a Conv2d weight (O, C, k, k) has fan_in k*k*C).
"""

import math
import numbers

import numpy as np

from . import random as _random

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "zeros_", "ones_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "orthogonal_"]


def _array(tensor):
    """The array to fill: the tensor itself or a Parameter's data."""
    from .nn.parameter import Parameter

    array = tensor.data if isinstance(tensor, Parameter) else tensor
    if not isinstance(array, np.ndarray) and not hasattr(array, "__cuda_array_interface__"):
        raise TypeError(f"tensor must be an array or a fastnn.nn.Parameter, got {type(tensor).__name__}")
    if array.dtype.kind != "f":
        raise TypeError(f"tensor must have a floating dtype, got {array.dtype}")
    return array


def _rng(generator):
    if generator is None:
        return np.random.default_rng(_random.fresh_seed())
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"generator must be a numpy.random.Generator or None, got {type(generator).__name__}")
    return generator


def _fill(array, values):
    if isinstance(array, np.ndarray):
        array[...] = values
    else:  # a GPU array: copy the host samples over
        import cupy

        array[...] = cupy.asarray(values)


def _number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    return float(value)


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (torch's values): 1 for 'linear', 'conv*d'
    and 'sigmoid', 5/3 for 'tanh', sqrt(2) for 'relu', sqrt(2 / (1 + slope**2)) for
    'leaky_relu' (param = negative slope, default 0.01), 3/4 for 'selu'."""
    if nonlinearity in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                        "conv_transpose2d", "conv_transpose3d", "sigmoid"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else _number(param, "param")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"unsupported nonlinearity {nonlinearity!r}")


def _fans(array):
    if array.ndim < 2:
        raise ValueError(f"fan in and fan out need a tensor of at least 2 dimensions, got shape {array.shape}")
    receptive = math.prod(array.shape[2:])
    return array.shape[1] * receptive, array.shape[0] * receptive


def _fan(array, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = _fans(array)
    return fan_in if mode == "fan_in" else fan_out


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    array = _array(tensor)
    a, b = _number(a, "a"), _number(b, "b")
    _fill(array, _rng(generator).uniform(a, b, array.shape))
    return tensor


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std**2)."""
    array = _array(tensor)
    mean, std = _number(mean, "mean"), _number(std, "std")
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    _fill(array, _rng(generator).normal(mean, std, array.shape))
    return tensor


def constant_(tensor, val):
    _array(tensor)[...] = _number(val, "val")
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """Glorot & Bengio (2010): U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out))."""
    array = _array(tensor)
    fan_in, fan_out = _fans(array)
    bound = _number(gain, "gain") * math.sqrt(6.0 / (fan_in + fan_out))
    _fill(array, _rng(generator).uniform(-bound, bound, array.shape))
    return tensor


def xavier_normal_(tensor, gain=1.0, generator=None):
    """Glorot & Bengio (2010): N(0, std**2), std = gain * sqrt(2 / (fan_in + fan_out))."""
    array = _array(tensor)
    fan_in, fan_out = _fans(array)
    std = _number(gain, "gain") * math.sqrt(2.0 / (fan_in + fan_out))
    _fill(array, _rng(generator).normal(0.0, std, array.shape))
    return tensor


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He et al. (2015): U(-bound, bound), bound = sqrt(3) * gain / sqrt(fan), with
    gain = calculate_gain(nonlinearity, a) and fan the fan_in or fan_out (mode)."""
    array = _array(tensor)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(array, mode))
    bound = math.sqrt(3.0) * std
    _fill(array, _rng(generator).uniform(-bound, bound, array.shape))
    return tensor


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """He et al. (2015): N(0, std**2), std = gain / sqrt(fan) (see kaiming_uniform_)."""
    array = _array(tensor)
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(array, mode))
    _fill(array, _rng(generator).normal(0.0, std, array.shape))
    return tensor


def orthogonal_(tensor, gain=1.0, generator=None):
    """Saxe et al. (2013): a (semi-)orthogonal matrix times gain, from the QR decomposition
    of a Gaussian matrix (signs fixed so the result is uniformly distributed). A tensor
    of more than 2 dimensions is viewed as (shape[0], the rest)."""
    array = _array(tensor)
    if array.ndim < 2:
        raise ValueError(f"orthogonal_ needs a tensor of at least 2 dimensions, got shape {array.shape}")
    gain = _number(gain, "gain")
    rows = array.shape[0]
    cols = array.size // rows if rows else 0
    flat = _rng(generator).standard_normal((rows, cols))
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    _fill(array, (gain * q).reshape(array.shape))
    return tensor
