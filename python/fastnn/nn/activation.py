"""Activation layers over fastnn's activation kernels (torch names and defaults)."""

import numpy as np

from ..functional import raw as F  # arrays only: no Parameter unwrapping
from .module import Module, check_bool, check_float, check_grad, check_input, check_int, factory_dtype
from .parameter import Parameter

__all__ = ["ReLU", "LeakyReLU", "PReLU", "ELU", "SELU", "GELU", "Sigmoid", "Tanh", "SiLU", "Softplus"]


class _Elementwise(Module):
    """y = f(x) elementwise, any shape. Subclasses give ``_f(x)`` and ``_df(dy, x)``;
    they keep x (a reference to the input, not a copy) for the backward."""

    def forward(self, x):
        x = check_input(self, x)
        self._saved = x
        return self._f(x)

    def backward(self, dy, *, input_grad=True):
        x = self._saved_state(input_grad)
        dy = check_grad(self, dy, x.shape, x.dtype)
        self._saved = None
        return self._df(dy, x) if input_grad else None


class ReLU(_Elementwise):
    """max(x, 0). Keeps its output y (which the next layer holds anyway), not x: the
    gradient is dy where y > 0. ``inplace=True`` writes y over x."""

    def __init__(self, inplace=False):
        super().__init__()
        self.inplace = check_bool(inplace, "inplace")

    def forward(self, x):
        x = check_input(self, x)
        y = F.relu(x, out=x if self.inplace else None)
        self._saved = y
        return y

    def _df(self, dy, y):
        return F.relu_backward(dy, y)

    def extra_repr(self):
        return "inplace=True" if self.inplace else ""


class LeakyReLU(_Elementwise):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_float(negative_slope, "negative_slope")

    def _f(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def _df(self, dy, x):
        return F.leaky_relu_backward(dy, x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class ELU(_Elementwise):
    """x if x > 0 else alpha * (exp(x) - 1)."""

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_float(alpha, "alpha")

    def _f(self, x):
        return F.elu(x, self.alpha)

    def _df(self, dy, x):
        return F.elu_backward(dy, x, self.alpha)

    def extra_repr(self):
        return f"alpha={self.alpha}"


class SELU(_Elementwise):
    """scale * elu(x, alpha) with Klambauer et al.'s constants."""

    def _f(self, x):
        return F.selu(x)

    def _df(self, dy, x):
        return F.selu_backward(dy, x)


class GELU(_Elementwise):
    """x * Phi(x) (approximate='none') or its tanh approximation (approximate='tanh')."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _f(self, x):
        return F.gelu(x, self.approximate)

    def _df(self, dy, x):
        return F.gelu_backward(dy, x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x))."""

    def _f(self, x):
        return F.sigmoid(x)

    def _df(self, dy, x):
        return F.sigmoid_backward(dy, x)


class Tanh(_Elementwise):
    def _f(self, x):
        return F.tanh(x)

    def _df(self, dy, x):
        return F.tanh_backward(dy, x)


class SiLU(_Elementwise):
    """x * sigmoid(x) (swish)."""

    def _f(self, x):
        return F.silu(x)

    def _df(self, dy, x):
        return F.silu_backward(dy, x)


class Softplus(_Elementwise):
    """log(1 + exp(beta * x)) / beta, and x where beta * x > threshold."""

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = check_float(beta, "beta")
        self.threshold = check_float(threshold, "threshold")

    def _f(self, x):
        return F.softplus(x, self.beta, self.threshold)

    def _df(self, dy, x):
        return F.softplus_backward(dy, x, self.beta, self.threshold)

    def extra_repr(self):
        return f"beta={self.beta}, threshold={self.threshold}"


class PReLU(Module):
    """x if x > 0 else weight * x, with a learnable slope: one for every element
    (num_parameters=1) or one per channel along axis 1 (num_parameters = C), initialized
    to ``init``. Keeps x (a reference) for the backward."""

    def __init__(self, num_parameters=1, init=0.25, *, dtype=None):
        super().__init__()
        self.num_parameters = check_int(num_parameters, "num_parameters", 1)
        init = check_float(init, "init")
        self.weight = Parameter(np.full(self.num_parameters, init, factory_dtype(dtype)))

    def forward(self, x):
        x = check_input(self, x, self.weight.dtype)
        c = self.num_parameters
        if c > 1 and (x.ndim < 2 or x.shape[1] != c):
            raise ValueError(f"{type(self).__name__}: num_parameters={c} needs input of shape "
                             f"(N, {c}, ...), got {tuple(x.shape)}")
        self._saved = x
        return F.prelu(x, self.weight.data, channel_axis=1)

    def backward(self, dy, *, input_grad=True):
        x = self._saved_state(input_grad)
        dy = check_grad(self, dy, x.shape, x.dtype)
        self._saved = None
        dx, dweight = F.prelu_backward(dy, x, self.weight.data, channel_axis=1)
        if self.weight.requires_grad:
            self.weight._accumulate(dweight)
        return dx if input_grad else None

    def extra_repr(self):
        return f"num_parameters={self.num_parameters}"
