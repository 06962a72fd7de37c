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
        """dx (shape): the sum over kernel offsets k = (i, j) of grad_at(k) (an (N, C, OH, OW)
        array) added where offset k's windows read the input."""
        n, c, h, w = shape
        ph, pw = self.padding
        xp = array_module(dy)
        dxp = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dy.dtype)
        kh, kw = self.kernel_size
        for i in range(kh):
            for j in range(kw):
                hs, ws = window_slice(i, j, self.stride, _NO_DILATION, out_hw)
                dxp[:, :, hs, ws] += grad_at(i * kw + j)
        return unpad(dxp, self.padding)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum over each kh x kw window of x (N, C, H, W), moved by ``stride``
    (default: kernel_size); ``padding`` adds -inf around H and W. A NaN in a window is
    its maximum (as torch). The gradient goes to each window's maximum (the first one
    on ties). Keeps only the index of each window's maximum (one byte per output when
    kh*kw <= 256) and the input's shape."""

    def forward(self, x):
        x, view, out_hw = self._windows(x, -math.inf)
        xp = array_module(x)
        n, c = x.shape[:2]
        # (N, C, OH, OW, kh*kw): one row per window, then the first maximum of each
        flat = xp.ascontiguousarray(view.transpose(0, 1, 4, 5, 2, 3)).reshape(n, c, *out_hw, -1)
        index = flat.argmax(axis=-1)
        y = xp.take_along_axis(flat, index[..., None], axis=-1)[..., 0]
        if flat.shape[-1] <= 256:
            index = index.astype(np.uint8)
        self._saved = (index, x.shape, out_hw, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        index, shape, out_hw, dtype = self._saved_state()
        dy = check_grad(self, dy, (*shape[:2], *out_hw), dtype)
        self._saved = None
        if not input_grad:
            return None
        xp = array_module(dy)
        zero = dy.dtype.type(0)
        return self._scatter(shape, out_hw, dy, lambda k: xp.where(index == k, dy, zero))


class AvgPool2d(_Pool2d):
    """The mean over each kh x kw window of x (N, C, H, W), moved by ``stride`` (default:
    kernel_size); zero ``padding`` counts in the mean (torch's count_include_pad=True).
    Keeps only the input's shape."""

    def forward(self, x):
        x, view, out_hw = self._windows(x, 0.0)
        kh, kw = self.kernel_size
        y = view[:, :, 0, 0].copy()
        for k in range(1, kh * kw):
            y += view[:, :, k // kw, k % kw]
        y /= kh * kw
        self._saved = (x.shape, out_hw, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        shape, out_hw, dtype = self._saved_state()
        dy = check_grad(self, dy, (*shape[:2], *out_hw), dtype)
        self._saved = None
        if not input_grad:
            return None
        share = dy / (self.kernel_size[0] * self.kernel_size[1])
        return self._scatter(shape, out_hw, dy, lambda k: share)


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
        shape, out_shape, dtype = self._saved_state()
        dy = check_grad(self, dy, out_shape, dtype)
        self._saved = None
        return dy.reshape(shape) if input_grad else None

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
