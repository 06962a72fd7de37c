"""``MaxPool2d`` and ``AvgPool2d`` over NCHW arrays (windows read through a strided view,
no Python loop over pixels), and ``Flatten``."""

import math

import numpy as np

from .conv import output_size, pad, pair, unpad, window_slice, windows
from .module import Module, array_module, check_grad, check_input, check_int

__all__ = ["MaxPool2d", "AvgPool2d", "Flatten"]

_NO_DILATION = (1, 1)


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding should be at most half of the kernel size, got padding="
                             f"{self.padding} and kernel_size={self.kernel_size}")

    def _windows(self, x, fill):
        """(x checked, the windows view (N, C, kh, kw, OH, OW) of x padded with fill, (OH, OW))."""
        x = check_input(self, x)
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, C, H, W), got {tuple(x.shape)}")
        out_hw = tuple(output_size(self, x.shape[2 + a], self.kernel_size[a], self.stride[a],
                                   self.padding[a], 1) for a in range(2))
        return x, windows(pad(x, self.padding, fill), self.kernel_size, self.stride, _NO_DILATION, out_hw), out_hw

    def _scatter(self, shape, out_hw, dy, grad_at):
        """dx (shape): the sum over kernel offsets k = (i, j) of grad_at(k, out), the
        (N, C, OH, OW) gradient of what offset k's windows read, added there (written
        straight into out, that part of dx, when windows do not overlap)."""
        n, c, h, w = shape
        (ph, pw), (kh, kw), (sh, sw) = self.padding, self.kernel_size, self.stride
        xp = array_module(dy)
        padded = (n, c, h + 2 * ph, w + 2 * pw)
        disjoint = sh >= kh and sw >= kw
        tiled = (sh, sw) == (kh, kw) and padded[2:] == (out_hw[0] * sh, out_hw[1] * sw)
        dxp = xp.empty(padded, dy.dtype) if tiled else xp.zeros(padded, dy.dtype)
        for i in range(kh):
            for j in range(kw):
                hs, ws = window_slice(i, j, self.stride, _NO_DILATION, out_hw)
                part = dxp[:, :, hs, ws]
                if disjoint:  # each input element is read by one window at most
                    grad_at(i * kw + j, part)
                else:
                    xp.add(part, grad_at(i * kw + j, None), out=part)
        return unpad(dxp, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum over each kh x kw window of x (N, C, H, W), moved by ``stride``
    (default: kernel_size); ``padding`` adds -inf around H and W. A NaN in a window is
    its maximum (as torch). The gradient goes to each window's maximum (the first one
    on ties, the first NaN if any). Keeps only the index of each window's maximum (one
    byte per output) and the input's shape."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)
        if self.kernel_size[0] * self.kernel_size[1] > 256:
            raise ValueError(f"kernel_size {self.kernel_size} has more than 256 elements")

    def forward(self, x):
        x, view, out_hw = self._windows(x, -math.inf)
        xp = array_module(x)
        kw = self.kernel_size[1]
        offsets = self.kernel_size[0] * kw
        # one pass per kernel offset k over the (N, C, OH, OW) outputs: where offset k's
        # value beats the best so far (strictly: ties keep the first), it becomes the best;
        # k exceeds every earlier index, so max(index, k * beats) records it
        y = xp.array(view[:, :, 0, 0])
        index = xp.zeros(y.shape, np.uint8)
        for k in range(1, offsets):
            value = view[:, :, k // kw, k % kw]
            beats = xp.greater(value, y).view(np.uint8)
            xp.maximum(index, xp.multiply(beats, np.uint8(k), out=beats), out=index)
            xp.maximum(y, value, out=y)  # NaN propagates
        nan = xp.isnan(y)
        if nan.any():  # the winner of a window holding NaN is its first NaN
            for k in range(offsets - 1, -1, -1):
                value = view[:, :, k // kw, k % kw]
                xp.copyto(index, np.uint8(k), where=nan & (value != value))
        self._saved = (index, x.shape, out_hw, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        index, shape, out_hw, dtype = self._saved_state(input_grad)
        dy = check_grad(self, dy, (*shape[:2], *out_hw), dtype)
        self._saved = None
        if not input_grad:
            return None
        xp = array_module(dy)
        return self._scatter(shape, out_hw, dy, lambda k, out: xp.multiply(dy, index == k, out=out))


class AvgPool2d(_Pool2d):
    """The mean over each kh x kw window of x (N, C, H, W), moved by ``stride`` (default:
    kernel_size); zero ``padding`` counts in the mean (torch's count_include_pad=True).
    Keeps only the input's shape."""

    def forward(self, x):
        x, view, out_hw = self._windows(x, 0.0)
        kh, kw = self.kernel_size
        xp = array_module(x)
        y = xp.array(view[:, :, 0, 0])
        for k in range(1, kh * kw):
            xp.add(y, view[:, :, k // kw, k % kw], out=y)
        xp.divide(y, kh * kw, out=y)
        self._saved = (x.shape, out_hw, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        shape, out_hw, dtype = self._saved_state(input_grad)
        dy = check_grad(self, dy, (*shape[:2], *out_hw), dtype)
        self._saved = None
        if not input_grad:
            return None
        xp = array_module(dy)
        share = xp.divide(dy, self.kernel_size[0] * self.kernel_size[1])

        def grad_at(k, out):
            return share if out is None else xp.copyto(out, share)
        return self._scatter(shape, out_hw, dy, grad_at)


class Flatten(Module):
    """Flattens axes start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default.
    A view of the input when it is C-contiguous. Keeps only the input's shape."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim = check_int(start_dim, "start_dim")
        self.end_dim = check_int(end_dim, "end_dim")

    def forward(self, x):
        x = check_input(self, x)
        shape = x.shape
        start = self.start_dim + len(shape) if self.start_dim < 0 else self.start_dim
        end = self.end_dim + len(shape) if self.end_dim < 0 else self.end_dim
        if not 0 <= start <= end < len(shape):
            raise ValueError(f"{type(self).__name__}: start_dim={self.start_dim}, end_dim={self.end_dim} "
                             f"do not fit an input of shape {tuple(shape)}")
        y = x.reshape(*shape[:start], math.prod(shape[start:end + 1]), *shape[end + 1:])
        self._saved = (shape, y.shape, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        shape, out_shape, dtype = self._saved_state(input_grad)
        dy = check_grad(self, dy, out_shape, dtype)
        self._saved = None
        return dy.reshape(shape) if input_grad else None

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
