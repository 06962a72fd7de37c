"""``Parameter``: a trainable array, what layers own and ``fastnn.optim`` updates."""

import numpy as np

__all__ = ["Parameter"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def on_gpu(array):
    """A GPU array (CuPy, or anything with __cuda_array_interface__), not a NumPy one."""
    return not isinstance(array, np.ndarray) and hasattr(array, "__cuda_array_interface__")


def _check_data(data, name):
    if not (isinstance(data, np.ndarray) or on_gpu(data)):
        raise TypeError(f"{name} must be a numpy.ndarray or a cupy.ndarray, got {type(data).__name__}")
    if data.dtype not in _FLOATS:
        raise TypeError(f"{name} must have dtype float32 or float64, got {data.dtype}")
    if on_gpu(data):
        interface = data.__cuda_array_interface__
        if not data.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (cupy.ascontiguousarray makes a copy)")
        if interface["data"][1]:
            raise ValueError(f"{name} is read-only; a parameter is updated in place")
        return
    if not data.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (numpy.ascontiguousarray makes a copy)")
    if not data.flags.writeable:
        raise ValueError(f"{name} is read-only; a parameter is updated in place")
    if not data.flags.aligned:
        raise ValueError(f"{name} is not aligned to its dtype (numpy.array(..., copy=True) makes an aligned copy)")


class Parameter:
    """A trainable array: ``.data`` (a float32 or float64, C-contiguous, writeable NumPy
    or CuPy array, never copied) and ``.grad`` (None, or an array of the same library,
    shape and dtype, C-contiguous, writeable and aligned: checked when it is assigned, so
    a bad gradient is reported where it is made rather than at ``optimizer.step()``).
    ``device`` is 'cpu' or 'cuda:N'.

    Optimizers update ``.data`` in place, so views of it stay valid. ``shape``, ``dtype``,
    ``ndim``, ``size()``, ``numel()`` and ``dim()`` read as in PyTorch;
    ``numpy.asarray(p)`` is ``p.data``."""

    __slots__ = ("_data", "_grad", "requires_grad", "__weakref__")

    def __init__(self, data, requires_grad=True):
        _check_data(data, "data")
        self._data = data
        self._grad = None
        self.requires_grad = bool(requires_grad)

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        _check_data(value, "data")
        self._data = value

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            gpu = on_gpu(self._data)
            if gpu and not on_gpu(value):
                raise TypeError(f"grad must be None or a cupy.ndarray (the parameter is on the GPU), "
                                f"got {type(value).__name__}")
            if not gpu and not isinstance(value, np.ndarray):
                raise TypeError(f"grad must be None or a numpy.ndarray, got {type(value).__name__}")
            if value.dtype != self._data.dtype:
                raise TypeError(f"grad has dtype {value.dtype} but the parameter has {self._data.dtype}")
            if value.shape != self._data.shape:
                raise ValueError(f"grad has shape {value.shape} but the parameter has {self._data.shape}")
            if gpu:
                if not value.flags.c_contiguous or value.__cuda_array_interface__["data"][1]:
                    raise ValueError("grad must be C-contiguous and writeable "
                                     "(cupy.array(grad, copy=True) makes such a copy)")
            elif not (value.flags.c_contiguous and value.flags.writeable and value.flags.aligned):
                raise ValueError("grad must be C-contiguous, writeable and aligned "
                                 "(numpy.array(grad, copy=True) makes such a copy)")
        self._grad = value

    def _accumulate(self, g):
        """Add a gradient the caller just made (a fresh C-contiguous array of the
        parameter's shape and dtype): it becomes ``.grad``, or is added to it in place."""
        if self._grad is None:
            self._grad = g
        else:
            self._grad += g

    def requires_grad_(self, requires_grad=True):
        """Set ``requires_grad`` (a bool); returns self."""
        if not isinstance(requires_grad, bool):
            raise TypeError(f"requires_grad must be a bool, got {type(requires_grad).__name__}")
        self.requires_grad = requires_grad
        return self

    @property
    def device(self):
        """'cpu' for a NumPy array, 'cuda:N' for an array on GPU N."""
        return f"cuda:{self._data.device.id}" if on_gpu(self._data) else "cpu"

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def size(self, dim=None):
        """The shape (torch.Tensor.size), or its extent along ``dim``."""
        return self._data.shape if dim is None else self._data.shape[dim]

    def numel(self):
        return self._data.size

    def __array__(self, dtype=None, copy=None):
        if on_gpu(self._data):
            raise TypeError("the parameter lives on the GPU: copy it to the host explicitly "
                            "(cupy.asnumpy(p.data))")
        if dtype is not None and np.dtype(dtype) != self._data.dtype:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def __repr__(self):
        return f"Parameter containing:\n{self._data!r}"
