"""The GPU test modules' guard: CuPy, fastnn's CUDA module and a device, or skip."""

import pytest

import fastnn


def require_cuda():
    """Returns cupy; skips the calling test module without CuPy, the CUDA module or a GPU."""
    cp = pytest.importorskip("cupy")
    try:
        devices = fastnn._backend.cuda_module().device_count()
    except RuntimeError:
        devices = 0
    if devices == 0:
        pytest.skip("no CUDA device (or fastnn built without its CUDA module)", allow_module_level=True)
    return cp
