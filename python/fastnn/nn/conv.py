"""``Conv2d``: 2-D convolution (cross-correlation, as torch) on NCHW arrays, by im2col
and one matmul; the pooling layers share its window helpers."""

import math
import numbers

import numpy as np

from .. import init
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


def pad(x, padding, value=0.0):
    """x (N, C, H, W) with `value` around H and W (x itself when padding is (0, 0))."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    n, c, h, w = x.shape
    out = array_module(x).full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w] = x
    return out


def unpad(dx_padded, padding):
    """The inner (unpadded) part of a padded gradient, C-contiguous."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return dx_padded
    h, w = dx_padded.shape[2] - 2 * ph, dx_padded.shape[3] - 2 * pw
    return array_module(dx_padded).ascontiguousarray(dx_padded[:, :, ph:ph + h, pw:pw + w])


def windows(xp_, kernel, stride, dilation, out_hw):
    """A view (N, C, kh, kw, OH, OW), only read, of the padded input xp_ (N, C, Hp, Wp):
    element [n, c, i, j, p, q] is xp_[n, c, p*sh + i*dh, q*sw + j*dw]. No copy."""
    n, c = xp_.shape[:2]
    s_n, s_c, s_h, s_w = xp_.strides
    (kh, kw), (sh, sw), (dh, dw), (oh, ow) = kernel, stride, dilation, out_hw
    return array_module(xp_).lib.stride_tricks.as_strided(
        xp_, (n, c, kh, kw, oh, ow), (s_n, s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw))


def window_slice(i, j, stride, dilation, out_hw):
    """The (H, W) slices of the padded input that kernel offset (i, j) reads, one per output pixel."""
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, out_hw
    return (slice(i * dh, i * dh + sh * (oh - 1) + 1, sh), slice(j * dw, j * dw + sw * (ow - 1) + 1, sw))


class Conv2d(Module):
    """2-D convolution of x (N, in_channels, H, W) with weight (out_channels, in_channels,
    kh, kw), plus bias (out_channels,): torch.nn.Conv2d's cross-correlation, with
    ``stride``, zero ``padding`` and ``dilation`` (ints or pairs). Output
    (N, out_channels, OH, OW), OH = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1.

    im2col: the kh*kw shifted views of the padded input are copied once into a
    (in_channels*kh*kw, N*OH*OW) matrix, and one matmul with the weight gives every output.
    Initialized as torch does (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in_channels*kh*kw).
    Keeps that im2col matrix (kh*kw/(sh*sw) times the input's size) for the weight
    gradient, and the input's shape; the matrix and one output-sized work array stay
    allocated between calls, reused while the input's shape repeats."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, *,
                 dilation=1, bias=True, dtype=None):
        super().__init__()
        self.in_channels = check_int(in_channels, "in_channels", 1)
        self.out_channels = check_int(out_channels, "out_channels", 1)
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        check_bool(bias, "bias")
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
        view = windows(pad(x, self.padding), self.kernel_size, self.stride, self.dilation, out_hw)
        # cols (C*kh*kw, N*OH*OW): row (c, i, j) holds what weight[:, c, i, j] multiplies
        cols = self._work("cols", (self.in_channels * math.prod(self.kernel_size), pixels), x.dtype, xp)
        xp.copyto(cols.reshape(view.shape[1:4] + (n,) + out_hw), view.transpose(1, 2, 3, 0, 4, 5))
        product = self._work("product", (o, pixels), x.dtype, xp)
        xp.matmul(self.weight.data.reshape(o, -1), cols, out=product)
        y = xp.empty((n, o, *out_hw), x.dtype)
        by_channel = product.reshape(o, n, -1).transpose(1, 0, 2)  # (N, O, OH*OW), the output's order
        if self.bias is not None:
            xp.add(by_channel, self.bias.data[:, None], out=y.reshape(n, o, -1))
        else:
            xp.copyto(y.reshape(n, o, -1), by_channel)
        self._saved = (cols, x.shape, out_hw)
        return y

    def backward(self, dy, *, input_grad=True):
        cols, shape, out_hw = self._saved_state(input_grad)
        n, c, h, w = shape
        o = self.out_channels
        dy = check_grad(self, dy, (n, o, *out_hw), self.weight.dtype)
        self._saved = None
        xp = array_module(dy)
        dy2 = self._work("dy2", (o, cols.shape[1]), dy.dtype, xp)  # (O, N*OH*OW)
        xp.copyto(dy2.reshape(o, n, -1), dy.reshape(n, o, -1).transpose(1, 0, 2))
        weight, bias = self.weight, self.bias
        if weight.requires_grad:
            weight._accumulate(xp.matmul(dy2, cols.T).reshape(weight.shape))
        if bias is not None and bias.requires_grad:
            bias._accumulate(xp.sum(dy2, axis=1))
        if not input_grad:
            return None
        kh, kw = self.kernel_size
        dcols = xp.matmul(weight.data.reshape(o, -1).T, dy2, out=cols)  # cols is used up: reuse it
        dcols = dcols.reshape(c, kh, kw, n, *out_hw)
        ph, pw = self.padding
        # col2im: add each kernel offset's gradient back where it read, in dcols' (C, N)
        # order (a third faster than adding across it), then one copy to (N, C) unpadded
        dxp = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
        for i in range(kh):
            for j in range(kw):
                hs, ws = window_slice(i, j, self.stride, self.dilation, out_hw)
                part = dxp[:, :, hs, ws]
                xp.add(part, dcols[:, i, j], out=part)
        dx = xp.empty(shape, dy.dtype)
        xp.copyto(dx, dxp[:, :, ph:ph + h, pw:pw + w].transpose(1, 0, 2, 3))
        return dx

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.bias is None:
            s += ", bias=False"
        return s
