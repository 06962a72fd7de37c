"""Routes a call to the native module for where its arrays live: NumPy -> _cpu,
CuPy (anything with __cuda_array_interface__) -> _cuda. The CUDA module is imported
on first use, never by ``import fastnn``."""

from . import _cpu

_cuda_module = None
_cuda_error = None


def cuda_module():
    """The _cuda extension, or RuntimeError saying why it is not available."""
    global _cuda_module, _cuda_error
    if _cuda_module is None and _cuda_error is None:
        try:
            from . import _cuda

            _cuda_module = _cuda
        except ImportError as exc:  # not built (no nvcc at install time) or fails to load
            _cuda_error = exc
    if _cuda_module is None:
        raise RuntimeError(
            "fastnn was built without its CUDA module (fastnn._cuda: "
            f"{_cuda_error}); reinstall with nvcc on the PATH, or FASTNN_CUDA=ON to "
            "make a missing CUDA compiler an install error"
        )
    return _cuda_module


def _on_gpu(a):
    return hasattr(a, "__cuda_array_interface__")


def select(op, **arrays):
    """The module that runs `op` on these arrays (name -> array or None, x first)."""
    gpu = [name for name, a in arrays.items() if a is not None and _on_gpu(a)]
    if not gpu:
        return _cpu  # it checks that every array is a numpy.ndarray
    host = [name for name, a in arrays.items() if a is not None and not _on_gpu(a)]
    if host:
        raise TypeError(
            f"{op}: {', '.join(gpu)} on the GPU (CuPy) but {', '.join(host)} not; "
            "all arrays of one call must live on the same device"
        )
    cuda = cuda_module()
    if not hasattr(cuda, op):
        raise NotImplementedError(
            f"{op} has no CUDA kernel in this version of fastnn yet; "
            "pass NumPy arrays (cupy.asnumpy) to run it on the CPU"
        )
    return cuda
