"""Affine layers: ``Linear`` and ``Maxout`` (an affine map to ``pieces`` values per output,
then their maximum). Both run the array library's matmul (BLAS on the CPU)."""

import math

import numpy as np

from ..functional import raw as F  # arrays only: no Parameter unwrapping
from .. import init
from .module import Module, array_module, check_bool, check_grad, check_input, check_int, factory_dtype
from .parameter import Parameter

__all__ = ["Linear", "Maxout"]


class _Affine(Module):
    """weight (rows, in_features) and bias (rows,) with torch's Linear initialization:
    U(-1/sqrt(in_features), 1/sqrt(in_features)) for both."""

    def __init__(self, in_features, rows, bias, dtype):
        super().__init__()
        self.in_features = check_int(in_features, "in_features", 1)
        check_bool(bias, "bias")
        dtype = factory_dtype(dtype)
        self.weight = Parameter(np.empty((rows, self.in_features), dtype))
        if bias:
            self.bias = Parameter(np.empty(rows, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """torch's default: kaiming_uniform_(weight, a=sqrt(5)), i.e. U(-b, b) with
        b = 1/sqrt(in_features), and the bias from the same range."""
        rng = init._rng(generator)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=rng)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features)
            init.uniform_(self.bias, -bound, bound, generator=rng)

    def _affine(self, x):
        """x (*, in_features) -> (x as (M, in_features), x @ weight.T + bias as (M, rows))."""
        x = check_input(self, x, self.weight.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input of shape (*, {self.in_features}), "
                             f"got {tuple(x.shape)}")
        xp = array_module(x)
        x2 = x.reshape(-1, self.in_features)
        z = xp.matmul(x2, self.weight.data.T)
        if self.bias is not None:
            xp.add(z, self.bias.data, out=z)
        return x2, z

    def _affine_backward(self, dz, x2, input_grad):
        """Adds dweight = dz.T @ x and dbias = sum(dz) to the gradients; returns dz @ weight."""
        weight, bias = self.weight, self.bias
        xp = array_module(dz)
        if weight.requires_grad:
            weight._accumulate(xp.matmul(dz.T, x2))
        if bias is not None and bias.requires_grad:
            bias._accumulate(xp.sum(dz, axis=0))
        return xp.matmul(dz, weight.data) if input_grad else None


class Linear(_Affine):
    """y = x @ weight.T + bias, x of shape (*, in_features).

    weight (out_features, in_features), bias (out_features,) (bias=False: none),
    initialized as torch does (U(-1/sqrt(in_features), 1/sqrt(in_features)), from
    ``fastnn.random``'s global generator). Keeps the input x (a reference, not a copy)
    for the weight gradient."""

    def __init__(self, in_features, out_features, bias=True, *, dtype=None):
        out_features = check_int(out_features, "out_features", 0)
        super().__init__(in_features, out_features, bias, dtype)
        self.out_features = out_features

    def forward(self, x):
        x2, y = self._affine(x)
        self._saved = (x2, x.shape)
        return y.reshape(*x.shape[:-1], self.out_features)

    def backward(self, dy, *, input_grad=True):
        x2, shape = self._saved_state(input_grad)
        dy = check_grad(self, dy, (*shape[:-1], self.out_features), self.weight.dtype)
        self._saved = None
        dx = self._affine_backward(dy.reshape(-1, self.out_features), x2, input_grad)
        return None if dx is None else dx.reshape(shape)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Maxout(_Affine):
    """Maxout (Goodfellow et al. 2013): each of out_features outputs is the maximum of
    ``pieces`` affine maps of x (*, in_features).

    One matmul makes z = x @ weight.T + bias of shape (*, out_features * pieces), where
    rows j * pieces ... j * pieces + pieces - 1 of weight (out_features * pieces,
    in_features) and bias are output j's pieces; then the maxout kernel takes the maximum
    over each group. Initialized as Linear(in_features, out_features * pieces). Keeps x
    (a reference) and z for the backward."""

    def __init__(self, in_features, out_features, pieces, bias=True, *, dtype=None):
        out_features = check_int(out_features, "out_features", 0)
        pieces = check_int(pieces, "pieces", 1)
        super().__init__(in_features, out_features * pieces, bias, dtype)
        self.out_features, self.pieces = out_features, pieces

    def forward(self, x):
        x2, z = self._affine(x)
        y = F.maxout(z, self.pieces, channel_axis=1)
        self._saved = (x2, z, x.shape)
        return y.reshape(*x.shape[:-1], self.out_features)

    def backward(self, dy, *, input_grad=True):
        x2, z, shape = self._saved_state(input_grad)
        dy = check_grad(self, dy, (*shape[:-1], self.out_features), self.weight.dtype)
        self._saved = None
        dz = F.maxout_backward(dy.reshape(-1, self.out_features), z, self.pieces, channel_axis=1, out=z)
        dx = self._affine_backward(dz, x2, input_grad)
        return None if dx is None else dx.reshape(shape)

    def extra_repr(self):
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"pieces={self.pieces}, bias={self.bias is not None}")
