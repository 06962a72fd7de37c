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
    """The module that runs `op` on these arrays (name -> array or None).

    Device arrays go to the CUDA module when it has a kernel for `op`. Otherwise they
    go to _cpu too: it checks every argument as for host arrays (views of each array,
    one device for all, dtypes, shapes) and then calls refuse_device_arrays."""
    if any(a is not None and _on_gpu(a) for a in arrays.values()):
        try:
            cuda = cuda_module()
        except RuntimeError:
            return _cpu
        if hasattr(cuda, op):
            return cuda
    return _cpu


def refuse_device_arrays(op):
    """Called by _cpu once the arguments of `op` passed their checks but live on the GPU."""
    cuda_module()  # RuntimeError when the CUDA module is missing
    raise NotImplementedError(
        f"{op} has no CUDA kernel in this version of fastnn yet; "
        "pass NumPy arrays (cupy.asnumpy) to run it on the CPU"
    )
