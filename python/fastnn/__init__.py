"""fastnn: native kernels for training neural networks.

NumPy arrays run on the CPU kernels (SIMD, multi-threaded), CuPy arrays on the CUDA kernels.
See ``fastnn.functional`` (alias ``fastnn.F``) and ``fastnn.info()``.
"""

import os as _os
import warnings as _warnings

from . import _backend, _cpu
from . import functional
from . import functional as F
from . import random
from . import nn, optim
from . import init
from . import distributed
from .serialization import load, save
from . import data, train

__version__ = _cpu.__version__
__all__ = ["F", "functional", "nn", "optim", "info", "set_num_threads", "get_num_threads", "empty_cache",
           "__version__", "init", "random", "save", "load", "data", "train", "distributed"]


def set_num_threads(n):
    """Threads the CPU kernels use (default: OMP_NUM_THREADS, else the cores this process
    may run on).
    Results do not depend on it: work is split by the data's shape."""
    _cpu.set_num_threads(n)  # an int or NumPy integer in range, else TypeError/ValueError naming n


def get_num_threads():
    """Threads the CPU kernels use."""
    return _cpu.get_num_threads()


def empty_cache():
    """Free the result buffers fastnn keeps for reuse.

    Results of 1 MiB and more are allocated from blocks that earlier results gave
    back when Python freed them (up to 1 GiB is kept), so a training loop that makes
    the same shapes every step does not pay page faults each time. This returns
    that memory to the system."""
    _cpu.empty_cache()


def _blas():
    """The BLAS libraries loaded in this process (NumPy's, and any other's), as
    threadpoolctl finds them: their threads compete with fastnn's for the cores."""
    import threadpoolctl

    return [{"library": lib.get("internal_api"), "version": lib.get("version"),
             "threads": lib.get("num_threads"), "threading_layer": lib.get("threading_layer"),
             "path": lib.get("filepath")}
            for lib in threadpoolctl.threadpool_info() if lib.get("user_api") == "blas"]


def _cuda_info():
    """(built, runtime version, architectures built, device count, devices as text)."""
    try:
        cuda = _backend.cuda_module()
    except RuntimeError:
        return False, None, [], 0, []
    v = cuda.runtime_version()
    gpus = [f"{d['index']}: {d['name']} (compute capability {d['compute_capability'][0]}."
            f"{d['compute_capability'][1]}, {d['memory_bytes'] / 2**30:.0f} GiB)" for d in cuda.devices()]
    return True, f"{v // 1000}.{v % 1000 // 10}", list(cuda.archs), len(gpus), gpus


def info():
    """What this installation has: version, backends, SIMD level, threads, the BLAS
    libraries loaded beside it (NumPy's) and their threads, and the CUDA build (runtime
    version, GPU architectures compiled for) and devices (with their compute capability)."""
    cuda_built, cuda_runtime, cuda_archs, cuda_devices, gpus = _cuda_info()
    return {
        "version": __version__,
        "backends": ["cpu"] + (["cuda"] if cuda_built else []),
        "simd": _cpu.get_simd_level(),
        "simd_available": list(_cpu.simd_available()),
        "simd_built": list(_cpu.simd_built),
        "threads": get_num_threads(),
        "blas": _blas(),
        "cuda_built": cuda_built,
        "cuda_runtime": cuda_runtime,
        "cuda_archs": cuda_archs,
        "cuda_devices": cuda_devices,
        "gpus": gpus,
        "cached_bytes": _cpu.cached_bytes(),
    }


def _apply_simd_env():
    level = _os.environ.get("FASTNN_SIMD")
    if level:
        try:
            _cpu.set_simd_level(level.strip().lower())
        except ValueError as exc:
            _warnings.warn(f"FASTNN_SIMD={level!r} ignored: {exc}", RuntimeWarning, stacklevel=3)


_apply_simd_env()
