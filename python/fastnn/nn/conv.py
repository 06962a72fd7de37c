"""``Conv2d``: 2-D convolution (cross-correlation, as torch) on NCHW arrays, by im2col
and one matmul (the window copies are native kernels); the pooling layers share its
argument helpers."""

import math
import numbers

import numpy as np

from .. import _backend, init
from .module import Module, array_module, check_bool, check_grad, check_input, check_int, factory_dtype
from .parameter import Parameter

__all__ = ["Conv2d"]


def pair(value, name, minimum):
    """An int or a pair of ints (each >= minimum) as a pair."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return tuple(check_int(v, name, minimum) for v in value)


def output_size(layer, size, kernel, stride, padding, dilation):
    """Output length along one spatial axis; ValueError naming the layer if none fits."""
    span = dilation * (kernel - 1) + 1
    if size + 2 * padding < span:
        raise ValueError(f"{type(layer).__name__}: the input's spatial size {size} (padded: "
                         f"{size + 2 * padding}) is smaller than the kernel's {span}")
    return (size + 2 * padding - span) // stride + 1


class Conv2d(Module):
    """2-D convolution of x (N, in_channels, H, W) with weight (out_channels, in_channels,
    kh, kw), plus bias (out_channels,): torch.nn.Conv2d's cross-correlation, with
    ``stride``, zero ``padding`` and ``dilation`` (ints or pairs). Output
    (N, out_channels, OH, OW), OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1.

    im2col: a native kernel copies every window of the input (zero padding included,
    no padded copy) into a (in_channels*kh*kw, N*OH*OW) matrix, one matmul with the
    weight gives every output, and a second kernel writes it out as (N, O, OH, OW) with
    the bias added. The backward transposes dy and sums the bias gradient in one native
    pass (float64, fixed order), and col2im adds the columns' gradient back into dx (each
    element summed in float64 in a fixed order: the same bits for any thread count).
    Initialized as torch does (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels*kh*kw).
    Keeps that im2col matrix (kh*kw/(sh*sw) times the input's size) for the weight
    gradient, and the input's shape; the matrix and the (out_channels, N*OH*OW) work
    arrays of the product and its gradient stay allocated between calls, reused while the input's shape repeats."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 dilation=1, bias=True, dtype=None):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        bias = check_bool(bias, "bias")
        dtype = factory_dtype(dtype)
        self._workspace = {}
        self.weight = Parameter(np.empty((self.out_channels, self.in_channels, *self.kernel_size), dtype))
        if bias:
            self.bias = Parameter(np.empty(self.out_channels, dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self, generator=None):
        """torch's default: kaiming_uniform_(weight, a=sqrt(5)) and the bias from
        U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        rng = init._rng(generator)
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), generator=rng)
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels * math.prod(self.kernel_size))
            init.uniform_(self.bias, -bound, bound, generator=rng)

    def _work(self, name, shape, dtype, xp):
        """A work array kept between calls and reused while its shape repeats: a fresh
        multi-megabyte allocation costs page faults on every step. Only the layer uses
        it; what a call returns is always a new array."""
        buf = self._workspace.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype or array_module(buf) is not xp:
            buf = self._workspace[name] = xp.empty(shape, dtype)
        return buf

    def forward(self, x):
        x = check_input(self, x, self.weight.dtype)
        xp = array_module(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, {self.in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        n, o = x.shape[0], self.out_channels
        out_hw = tuple(output_size(self, x.shape[2 + a], self.kernel_size[a], self.stride[a],
                                   self.padding[a], self.dilation[a]) for a in range(2))
        pixels = n * out_hw[0] * out_hw[1]
        # cols (C*kh*kw, N*OH*OW): row (c, i, j) holds what weight[:, c, i, j] multiplies
        cols = self._work("cols", (self.in_channels * math.prod(self.kernel_size), pixels), x.dtype, xp)
        _backend.select("im2col", x=x, out=cols).im2col(x, self.kernel_size, self.stride, self.padding,
                                                        self.dilation, cols)
        product = self._work("product", (o, pixels), x.dtype, xp)
        xp.matmul(self.weight.data.reshape(o, -1), cols, out=product)
        bias = None if self.bias is None else self.bias.data
        y = _backend.select("bias_output", product=product, bias=bias).bias_output(product, bias,
                                                                                   (n, o, *out_hw), None)
        self._saved = (cols, x.shape, out_hw)
        return y

    def backward(self, dy, *, input_grad=True):
        cols, shape, out_hw = self._saved_state(input_grad)
        o = self.out_channels
        dy = check_grad(self, dy, (shape[0], o, *out_hw), self.weight.dtype)
        self._saved = None
        xp = array_module(dy)
        dy2 = self._work("dy2", (o, cols.shape[1]), dy.dtype, xp)  # (O, N*OH*OW)
        _, dbias = _backend.select("bias_output_backward", dy=dy, dproduct=dy2).bias_output_backward(dy, dy2, None)
        weight, bias = self.weight, self.bias
        if weight.requires_grad:
            weight._accumulate(xp.matmul(dy2, cols.T).reshape(weight.shape))
        if bias is not None and bias.requires_grad:
            bias._accumulate(dbias)
        if not input_grad:
            return None
        dcols = xp.matmul(weight.data.reshape(o, -1).T, dy2, out=cols)  # cols is used up: reuse it
        return _backend.select("col2im", cols=dcols).col2im(dcols, shape, self.kernel_size, self.stride,
                                                             self.padding, self.dilation, None)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
