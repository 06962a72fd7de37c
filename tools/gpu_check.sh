#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU, CUDA (nvcc), Python, CuPy, pybind11 and
# scikit-build-core installed: builds fastnn with its CUDA module, runs the GPU tests
# (pytest -m cuda) and the GPU benchmark, and prints a summary. Meant to run unattended
# in under 8 minutes; every step has a time cap and the summary says what passed.
#
#   bash tools/gpu_check.sh            # from the repository root (or anywhere: it cd's there)
#
# It builds for this machine's GPU only (CMAKE_CUDA_ARCHITECTURES=native, the fastest
# build); FASTNN_GPU_CHECK_ARCHS=all builds the release list (sm_75 ... sm_90 + PTX), or
# give a list (e.g. 80;90). Needs cmake (3.24+) and pytest besides the packages above.
#
# Logs go to gpu_check_logs/ (build.log, tests.log, bench.log, bench.json).
set -euo pipefail
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
cd "$(dirname "$0")/.."
root=$(pwd)
logs="$root/gpu_check_logs"
mkdir -p "$logs"
start=$(date +%s)
python=${PYTHON:-python3}
status_build=skipped status_tests=skipped status_bench=skipped

elapsed() { echo $(( $(date +%s) - start )); }
section() { printf '\n==== %s (%ss)\n' "$1" "$(elapsed)"; }

summary() {
  section "summary"
  echo "build:     $status_build  ($logs/build.log)"
  echo "GPU tests: $status_tests  ($logs/tests.log)"
  [ -f "$logs/tests.log" ] && grep -E '^(=+ .*(passed|failed|skipped|error).* =+|FAILED|ERROR)' "$logs/tests.log" | tail -15 || true
  echo "benchmark: $status_bench  ($logs/bench.log, $logs/bench.json)"
  [ -f "$logs/bench.log" ] && grep -E '^\|' "$logs/bench.log" | head -80 || true
  echo "total: $(elapsed) s"
}
trap summary EXIT

section "machine"
nvidia-smi || echo "nvidia-smi failed"
nvcc --version | tail -2 || echo "no nvcc on the PATH"
"$python" --version
"$python" -c 'import cupy; print("cupy", cupy.__version__, "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(), "devices", cupy.cuda.runtime.getDeviceCount())' \
  || echo "cupy: cannot import or sees no device (the GPU tests and benchmark need it)"
"$python" -c 'import pybind11, scikit_build_core; print("pybind11", pybind11.__version__, "scikit-build-core", scikit_build_core.__version__)' \
  || echo "pybind11 or scikit-build-core missing: the build will fail"
"$python" -c 'import numpy; print("numpy", numpy.__version__)' || echo "numpy missing"
"$python" -c 'import pytest; print("pytest", pytest.__version__)' || echo "pytest missing: the GPU tests will fail"
cmake --version | head -1 || "$python" -c 'import cmake; print("cmake (pip)", cmake.__version__)' \
  || echo "no cmake found: the build will fail (pip install cmake ninja)"
"$python" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())' 2>/dev/null || echo "torch: not installed (its columns are left out)"

section "build (FASTNN_CUDA=ON: a missing nvcc is an error)"
status_build=failed
export FASTNN_CUDA=ON
archs=${FASTNN_GPU_CHECK_ARCHS:-native}
if [ "$archs" != all ]; then
  export CMAKE_ARGS="${CMAKE_ARGS:-} -DCMAKE_CUDA_ARCHITECTURES=$archs"
fi
echo "CUDA architectures: $archs"
"$python" -m pip --version >/dev/null
timeout 300 "$python" -m pip install --no-build-isolation --no-deps -v . > "$logs/build.log" 2>&1 || {
  tail -40 "$logs/build.log"; exit 1; }
grep -iE 'warning' "$logs/build.log" | grep -v -iE 'pip|setuptools|DEPRECATION' | head -20 || true
status_build=ok
cd /tmp  # import the installed package, not the source tree
"$python" -m fastnn info

section "GPU tests (pytest -m cuda)"
status_tests=failed
# -W default: a library's deprecation warning is reported, not turned into a failure
timeout 240 "$python" -m pytest "$root"/tests/test_cuda*.py -m cuda -x -q -p no:cacheprovider \
  -o addopts="" -W default --rootdir "$root" > "$logs/tests.log" 2>&1 && status_tests=passed || true
tail -25 "$logs/tests.log"

section "GPU benchmark (fastnn bench --device cuda)"
status_bench=failed
timeout 150 "$python" -m fastnn bench --device cuda --sizes 1M,64M --json "$logs/bench.json" \
  > "$logs/bench.log" 2>&1 && status_bench=ok || true
tail -5 "$logs/bench.log"
[ "$status_tests" = passed ] && [ "$status_bench" = ok ]
