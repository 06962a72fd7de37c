"""``MaxPool2d`` and ``AvgPool2d`` over NCHW arrays (native window kernels), and
``Flatten``."""

import math

from .. import _backend
from .conv import output_size, pair
from .module import Module, check_grad, check_input, check_int

__all__ = ["MaxPool2d", "AvgPool2d", "Flatten"]


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else pair(stride, "stride", 1)
        self.padding = pair(padding, "padding", 0)
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size)):
            raise ValueError(f"padding should be at most half of the kernel size, got padding="
                             f"{self.padding} and kernel_size={self.kernel_size}")

    def _input(self, x):
        """x checked (C-contiguous, 4-D, at least one window): ValueError naming the layer."""
        x = check_input(self, x)
        if x.ndim != 4:
            raise ValueError(f"{type(self).__name__}: expected input of shape (N, C, H, W), got {tuple(x.shape)}")
        for a in range(2):
            output_size(self, x.shape[2 + a], self.kernel_size[a], self.stride[a], self.padding[a], 1)
        return x

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class MaxPool2d(_Pool2d):
    """The maximum over each kh x kw window of x (N, C, H, W), moved by ``stride``
    (default: kernel_size); ``padding`` adds -inf around H and W (padding is never a
    window's maximum). A NaN in a window is its maximum (as torch). The gradient goes to
    each window's maximum: the first one on ties (a window of -inf values: its first
    element), the first NaN if any; overlapping windows add their gradients. Keeps only
    the index of each window's maximum (one byte per output for windows of up to 256
    elements, else four) and the input's shape."""

    def forward(self, x):
        x = self._input(x)
        y, index = _backend.select("max_pool2d", x=x).max_pool2d(x, self.kernel_size, self.stride,
                                                                  self.padding, None, None)
        self._saved = (index, x.shape, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        index, shape, dtype = self._saved_state(input_grad)
        dy = check_grad(self, dy, index.shape, dtype)
        self._saved = None
        if not input_grad:
            return None
        return _backend.select("max_pool2d_backward", dy=dy, index=index).max_pool2d_backward(
            dy, index, shape, self.kernel_size, self.stride, self.padding, None)


class AvgPool2d(_Pool2d):
    """The mean over each kh x kw window of x (N, C, H, W), moved by ``stride`` (default:
    kernel_size); zero ``padding`` counts in the mean (torch's count_include_pad=True).
    Sums in float64. Keeps only the input's and the output's shapes."""

    def forward(self, x):
        x = self._input(x)
        y = _backend.select("avg_pool2d", x=x).avg_pool2d(x, self.kernel_size, self.stride, self.padding, None)
        self._saved = (x.shape, y.shape, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        shape, out_shape, dtype = self._saved_state(input_grad)
        dy = check_grad(self, dy, out_shape, dtype)
        self._saved = None
        if not input_grad:
            return None
        return _backend.select("avg_pool2d_backward", dy=dy).avg_pool2d_backward(
            dy, shape, self.kernel_size, self.stride, self.padding, None)


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
