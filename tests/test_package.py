"""Package-level contract: version, info(), threads, SIMD selection, CLI."""

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import fastnn

SIMD_NAMES = ("avx512", "avx2", "baseline")  # best first


def _clean_env(**overrides):
    env = dict(os.environ)
    for key in ("FASTNN_SIMD", "OMP_NUM_THREADS"):
        env.pop(key, None)
    env.update(overrides)
    return env


def _run_python(code, **env):
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env=_clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout.strip()


def _cpu_flags():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- version / info


def test_version_is_a_nonempty_string():
    assert isinstance(fastnn.__version__, str)
    assert fastnn.__version__.strip() != ""


def test_info_keys_and_types():
    info = fastnn.info()
    assert isinstance(info, dict)
    expected = {
        "version", "backends", "simd", "simd_available", "threads",
        "cuda_devices", "cuda_built",
    }
    assert expected <= set(info), f"missing keys: {expected - set(info)}"

    assert info["version"] == fastnn.__version__

    assert isinstance(info["backends"], list)
    assert "cpu" in info["backends"]

    assert info["simd"] in SIMD_NAMES
    assert isinstance(info["simd_available"], list)
    assert set(info["simd_available"]) <= set(SIMD_NAMES), info["simd_available"]
    assert info["simd"] in info["simd_available"]
    assert "baseline" in info["simd_available"]
    assert len(set(info["simd_available"])) == len(info["simd_available"])

    assert type(info["threads"]) is int and info["threads"] >= 1
    assert type(info["cuda_built"]) is bool
    assert type(info["cuda_devices"]) is int and info["cuda_devices"] >= 0


def test_info_cuda_fields_consistent():
    info = fastnn.info()
    assert ("cuda" in info["backends"]) == info["cuda_built"]
    if not info["cuda_built"]:
        assert info["cuda_devices"] == 0
    if not glob.glob("/dev/nvidia[0-9]*"):  # no GPU on this machine
        assert info["cuda_devices"] == 0


def test_info_reports_the_blas_beside_fastnn():
    import numpy as np
    import threadpoolctl

    np.ones((64, 64)) @ np.ones((64, 64))  # NumPy's BLAS is loaded with NumPy; used here
    blas = fastnn.info()["blas"]
    found = [lib for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"]
    assert [b["path"] for b in blas] == [lib["filepath"] for lib in found]
    assert blas, "NumPy's BLAS was not found"
    for b in blas:
        assert set(b) == {"library", "version", "threads", "threading_layer", "path"}
        assert isinstance(b["library"], str) and type(b["threads"]) is int and b["threads"] >= 1
    with threadpoolctl.threadpool_limits(1, user_api="blas"):
        assert all(b["threads"] == 1 for b in fastnn.info()["blas"])  # the live count


@pytest.mark.parametrize("cuda_built, devices, shown", [
    (True, 0, "cpu, cuda (built, no device)"),
    (True, 1, "cpu, cuda (1 device)"),
    (True, 2, "cpu, cuda (2 devices)"),
    (False, 0, "cpu"),
])
def test_cli_info_says_whether_cuda_has_a_device(monkeypatch, capsys, cuda_built, devices, shown):
    from fastnn import cli

    real = fastnn.info()
    fake = dict(real, backends=["cpu"] + (["cuda"] if cuda_built else []), cuda_built=cuda_built,
                cuda_devices=devices,
                blas=[{"library": "openblas", "version": "0.3.1", "threads": 3, "threading_layer": "pthreads",
                       "path": "/x/libopenblas.so"}])
    monkeypatch.setattr(fastnn, "info", lambda: fake)
    assert cli.main(["info"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert lines["backends"] == shown
    assert lines["blas"] == "openblas 0.3.1 (3 threads, pthreads)"
    assert lines["threads"] == str(real["threads"])


def test_simd_available_matches_cpu():
    flags = _cpu_flags()
    if flags is None:
        pytest.skip("/proc/cpuinfo not readable")
    avail = fastnn.info()["simd_available"]
    if "avx2" not in flags:
        assert "avx2" not in avail
    if "avx512f" not in flags:
        assert "avx512" not in avail


def test_default_simd_is_best_available():
    out = _run_python(
        "import fastnn; i = fastnn.info(); print(i['simd']); print(','.join(i['simd_available']))"
    )
    simd, avail = out.splitlines()
    avail = avail.split(",")
    best = next(name for name in SIMD_NAMES if name in avail)
    assert simd == best


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("n", [1, 2])
def test_set_num_threads_roundtrip(n, num_threads):
    with num_threads(n):
        assert fastnn.get_num_threads() == n
        assert fastnn.info()["threads"] == n


def test_set_num_threads_restores(num_threads):
    before = fastnn.get_num_threads()
    with num_threads(1):
        pass
    assert fastnn.get_num_threads() == before


@pytest.mark.parametrize("bad", [0, -1, 1.5])
def test_set_num_threads_rejects_bad_values(bad):
    before = fastnn.get_num_threads()
    with pytest.raises((ValueError, TypeError)):
        fastnn.set_num_threads(bad)
    assert fastnn.get_num_threads() == before


def test_default_threads_honour_omp_num_threads():
    out = _run_python("import fastnn; print(fastnn.get_num_threads())", OMP_NUM_THREADS="1")
    assert out == "1"


def test_default_threads_honour_omp_num_threads_2():
    out = _run_python(
        "import fastnn; print(fastnn.get_num_threads(), fastnn.info()['threads'])",
        OMP_NUM_THREADS="2",
    )
    assert out == "2 2"


# --------------------------------------------------------------------------- names


def test_functional_alias():
    import fastnn.functional

    assert fastnn.F is fastnn.functional
    assert callable(fastnn.F.batch_norm_forward)
    assert callable(fastnn.F.batch_norm_backward)


# --------------------------------------------------------------------------- SIMD selection


def test_set_simd_level_nonsense_raises(simd_levels):
    before = fastnn._cpu.get_simd_level()
    with pytest.raises(ValueError):
        fastnn._cpu.set_simd_level("nonsense")
    assert fastnn._cpu.get_simd_level() == before


def test_set_simd_level_unavailable_raises(simd_levels):
    missing = [name for name in SIMD_NAMES if name not in simd_levels]
    if not missing:
        pytest.skip("every SIMD level is available on this machine")
    before = fastnn._cpu.get_simd_level()
    for name in missing:
        with pytest.raises(ValueError):
            fastnn._cpu.set_simd_level(name)
    assert fastnn._cpu.get_simd_level() == before


def test_set_simd_level_roundtrip(simd_levels, simd_level):
    for name in simd_levels:
        with simd_level(name):
            assert fastnn._cpu.get_simd_level() == name
            assert fastnn.info()["simd"] == name


def test_env_fastnn_simd_baseline():
    out = _run_python("import fastnn; print(fastnn.info()['simd'])", FASTNN_SIMD="baseline")
    assert out == "baseline"


@pytest.mark.parametrize("level", ["avx2", "avx512"])
def test_env_fastnn_simd_level(level, simd_levels):
    if level not in simd_levels:
        pytest.skip(f"{level} not available here")
    out = _run_python(
        "import fastnn; print(fastnn.info()['simd'], fastnn._cpu.get_simd_level())",
        FASTNN_SIMD=level,
    )
    assert out == f"{level} {level}"


# --------------------------------------------------------------------------- CLI


def _check_info_output(proc):
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert fastnn.__version__ in proc.stdout
    avail = fastnn.info()["simd_available"]
    best = next(name for name in SIMD_NAMES if name in avail)  # the child runs without FASTNN_SIMD
    assert best in proc.stdout


def test_cli_console_script_info():
    bindir = Path(sys.executable).parent
    script = bindir / ("fastnn.exe" if os.name == "nt" else "fastnn")
    assert script.exists(), f"console script not found at {script}"
    proc = subprocess.run(
        [str(script), "info"], env=_clean_env(), capture_output=True, text=True, timeout=120
    )
    _check_info_output(proc)


def test_cli_python_m_info():
    proc = subprocess.run(
        [sys.executable, "-m", "fastnn", "info"],
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    _check_info_output(proc)


def test_cli_info_reports_env_simd():
    proc = subprocess.run(
        [sys.executable, "-m", "fastnn", "info"],
        env=_clean_env(FASTNN_SIMD="baseline"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "baseline" in proc.stdout


def test_large_results_reuse_freed_buffers_without_aliasing():
    import numpy as np

    fastnn.empty_cache()
    assert fastnn.info()["cached_bytes"] == 0
    x = np.random.default_rng(0).standard_normal((8, 4, 128, 128)).astype(np.float32)  # 2 MiB
    first = fastnn.F.batch_norm_forward(x, None, None, None, None).y
    expected = first.copy()
    assert first.flags.writeable and first.flags.c_contiguous
    del first
    assert fastnn.info()["cached_bytes"] >= x.nbytes  # the freed result went to the cache
    a = fastnn.F.batch_norm_forward(x, None, None, None, None).y
    b = fastnn.F.batch_norm_forward(x, None, None, None, None).y  # a is alive: b gets other memory
    assert not np.shares_memory(a, b)
    np.testing.assert_array_equal(a, expected)
    np.testing.assert_array_equal(b, expected)
    del a, b
    fastnn.empty_cache()
    assert fastnn.info()["cached_bytes"] == 0


class _FakeDeviceArray:
    """Stands in for a CuPy array: only __cuda_array_interface__ matters for routing."""

    __cuda_array_interface__ = {"shape": (2, 3), "typestr": "<f4", "data": (0, False),
                                "strides": None, "version": 3}


def test_mixing_host_and_device_arrays_is_a_type_error():
    import numpy as np

    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="weight.*GPU.*x"):
        fastnn.F.batch_norm_forward(x, _FakeDeviceArray(), None, None, None)
    with pytest.raises(TypeError, match="same device"):
        fastnn.F.batch_norm_backward(x, _FakeDeviceArray(), None, x[0], x[0])


def test_device_arrays_without_a_gpu_say_so():
    with pytest.raises(RuntimeError, match="batch_norm_forward: no CUDA device|CUDA module"):
        fastnn.F.batch_norm_forward(_FakeDeviceArray(), None, None, None, None)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="no nvcc on the PATH: the build may skip _cuda")
def test_info_reports_the_cuda_build_when_nvcc_is_there():
    """With nvcc on the PATH the build makes _cuda (CI has nvcc): info says so, with the
    CUDA runtime it links and the GPU architectures it was compiled for."""
    info = fastnn.info()
    assert info["cuda_built"] and "cuda" in info["backends"]
    assert re.fullmatch(r"\d+\.\d+", info["cuda_runtime"]), info["cuda_runtime"]
    assert {"75-real", "80-real", "86-real", "90-real", "90-virtual"} <= set(info["cuda_archs"]) or \
        os.environ.get("CMAKE_ARGS", "").find("CUDA_ARCHITECTURES") >= 0, info["cuda_archs"]
    assert len(info["gpus"]) == info["cuda_devices"]
    out = subprocess.run([sys.executable, "-m", "fastnn", "info"], capture_output=True, text=True, timeout=120)
    assert re.search(r"cuda_runtime\s+" + re.escape(info["cuda_runtime"]), out.stdout), out.stdout


def test_import_and_cpu_ops_work_when_the_cuda_module_fails_to_load():
    """A _cuda that can't load (here: an import that raises) leaves import fastnn and every
    CPU op working; device arrays then get the reason."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def imp(name, globals=None, locals=None, fromlist=(), level=0):\n"
        "    if name == '_cuda' or (fromlist and '_cuda' in fromlist):\n"
        "        raise ImportError('libcuda broke')\n"
        "    return real(name, globals, locals, fromlist, level)\n"
        "builtins.__import__ = imp\n"
        "import numpy as np, fastnn\n"
        "assert fastnn.info()['cuda_built'] is False\n"
        "assert (fastnn.F.relu(np.array([-1.0, 2.0])) == [0, 2]).all()\n"
        "class D:\n"
        "    __cuda_array_interface__ = dict(shape=(2,), typestr='<f4', data=(4096, False), version=3)\n"
        "try:\n"
        "    fastnn.F.relu(D())\n"
        "except RuntimeError as e:\n"
        "    assert 'libcuda broke' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_memory_floor_loops_compute_what_they_stream():
    """The benchmarks' floor loops must really read and write the arrays they time."""
    import numpy as np

    rng = np.random.default_rng(3)
    a = rng.standard_normal(300_001).astype(np.float32)  # not a multiple of any chunk
    b = rng.standard_normal(a.size).astype(np.float32)
    out = np.empty_like(a)
    fastnn._cpu.stream_copy(a, out)
    np.testing.assert_array_equal(out, a)
    assert fastnn._cpu.stream_read(a) == int(np.bitwise_xor.reduce(a.view(np.uint32)))
    c, d = a.copy(), b.copy()
    out2 = np.empty_like(a)
    fastnn._cpu.stream_pass([a, b], [out, out2], [c, d])  # s = a + b; out = out2 = s; c += s; d += s
    s = a + b
    for got, want in ((out, s), (out2, s), (c, a + s), (d, b + s)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="same size"):
        fastnn._cpu.stream_pass([a], [out[:-1]])
    with pytest.raises(ValueError, match="overlaps"):
        fastnn._cpu.stream_pass([a], [a])
    with pytest.raises(ValueError, match="same"):
        fastnn._cpu.stream_copy(a, out[:-1])


def test_streamed_floor_loops_and_threshold(stream_threshold):
    """Past the stream threshold the floor loops stream their stores: same bits, any alignment."""
    import numpy as np

    rng = np.random.default_rng(4)
    a = rng.standard_normal(200_003).astype(np.float32)
    a.view(np.uint32)[:3] = [0x7FC00001, 0xFF800000, 0x00000001]  # NaN payload, -inf, denormal
    b = rng.standard_normal(a.size).astype(np.float32)
    with stream_threshold(0):
        for offset in range(4):
            buf = np.zeros(a.size + 4, np.float32)
            out = buf[offset:offset + a.size]
            fastnn._cpu.stream_copy(a, out)
            np.testing.assert_array_equal(out.view(np.uint32), a.view(np.uint32))
            buf2 = np.zeros(a.size + 4, np.float32)
            out2 = buf2[offset:offset + a.size]
            fastnn._cpu.stream_pass([a, b], [out, out2])
            np.testing.assert_array_equal(out, a + b)
            np.testing.assert_array_equal(out2, a + b)
            assert not buf[:offset].any() and not buf[offset + a.size:].any()
            fastnn._cpu.stream_pass([b], [out, buf2[:a.size]])  # different alignments: plain stores
            np.testing.assert_array_equal(out, b)
            np.testing.assert_array_equal(buf2[:a.size], b)
        raw = np.frombuffer(rng.bytes(1001), np.uint8)  # not a whole number of floats
        raw_out = np.empty_like(raw)
        fastnn._cpu.stream_copy(raw, raw_out)
        np.testing.assert_array_equal(raw_out, raw)
    with pytest.raises(ValueError, match="stream threshold must be >= 0"):
        fastnn._cpu.set_stream_threshold(-1)
    assert fastnn._cpu.stream_threshold() > 0
