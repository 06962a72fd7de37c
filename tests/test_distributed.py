"""fastnn.distributed: the parts that need no MPI job here, and the MPI jobs themselves
(tests/distributed/ under ``mpiexec -n 2`` and ``-n 4``, and a job whose rank raises).

The MPI tests need mpi4py and mpiexec (``pip install "fastnn[mpi]"``); without them they
skip, unless FASTNN_REQUIRE_MPI=1 (CI), where they fail.
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import fastnn
import fastnn.distributed as dist
from fastnn import nn

TESTS = Path(__file__).parent
JOB_TIMEOUT_S = 120  # a whole mpiexec run; each test inside has its own watchdog


def _mpiexec():
    """The mpiexec beside this Python (the mpich wheel's), else the one on PATH; skips or
    (FASTNN_REQUIRE_MPI=1) fails when it or mpi4py is missing."""
    found = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
    reason = None
    try:
        import mpi4py  # noqa: F401  (imported only, not initialized: no MPI in this process)
    except ImportError as exc:
        reason = f"mpi4py is missing ({exc})"
    if found is None:
        reason = reason or "mpiexec is missing"
    if reason:
        if os.environ.get("FASTNN_REQUIRE_MPI") == "1":
            pytest.fail(f"FASTNN_REQUIRE_MPI=1 but {reason}: pip install 'fastnn[mpi]'")
        pytest.skip(f"{reason}: pip install 'fastnn[mpi]' to run the MPI tests")
    return found


def _run_job(ranks, *args):
    """Runs python *args on `ranks` ranks; returns (exit status, output, seconds)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [_mpiexec(), "-n", str(ranks), sys.executable, *args]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=TESTS.parent, env=env, capture_output=True, text=True,
                              timeout=JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        pytest.fail(f"{' '.join(cmd)} did not end within {JOB_TIMEOUT_S} s:\n{out[-5000:]}")
    return proc.returncode, proc.stdout + proc.stderr, time.monotonic() - t0


@pytest.mark.parametrize("ranks", [2, 4])
def test_mpi_suite(ranks):
    """tests/distributed/ on every rank of an MPI job."""
    code, out, _ = _run_job(ranks, "-m", "pytest", "tests/distributed", "-q", "-p", "no:cacheprovider")
    assert code == 0, out[-8000:]
    summaries = [line for line in out.splitlines() if " passed" in line and " in " in line]
    assert len(summaries) == ranks and not any("failed" in s or "error" in s for s in summaries), out[-3000:]


@pytest.mark.parametrize("ranks", [2, 4])
def test_a_rank_that_raises_mid_step_ends_the_job(ranks):
    code, out, seconds = _run_job(ranks, "tests/distributed/raise_mid_step.py")
    assert code != 0, out
    assert "rank 1 fails on purpose" in out and "aborting every rank" in out, out
    assert "finished" not in out and "rank 0 step 1 done" not in out, out
    assert seconds < JOB_TIMEOUT_S


# ------------------------------------------------------------- without a process group


def test_without_a_process_group_the_functions_say_what_to_call():
    assert not dist.is_initialized()
    for call in (dist.get_rank, dist.get_world_size, dist.barrier, lambda: dist.all_reduce([np.ones(2)]),
                 lambda: dist.broadcast([np.ones(2)]), lambda: dist.DistributedDataParallel(nn.Linear(2, 2)),
                 lambda: dist.DistributedSampler(10)):
        with pytest.raises(RuntimeError, match="call fastnn.distributed.init_process_group"):
            call()


def test_init_process_group_checks_its_arguments_first():
    with pytest.raises(ValueError, match="backend must be 'mpi' or 'nccl', got 'gloo'"):
        dist.init_process_group("gloo")
    with pytest.raises(TypeError, match="backend must be"):
        dist.init_process_group(None)
    with pytest.raises(TypeError, match="abort_on_exception must be a bool"):
        dist.init_process_group("mpi", abort_on_exception=1)


def test_a_missing_mpi4py_is_an_import_error_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "fastnn\[mpi\]"'):
        dist.init_process_group("mpi")
    assert not dist.is_initialized()


def test_sync_batchnorm_without_a_process_group_is_batchnorm():
    fastnn.random.seed(0)
    x = np.random.default_rng(0).standard_normal((8, 3, 4, 4)).astype(np.float32)
    bn, sync = nn.BatchNorm2d(3, momentum=None), nn.SyncBatchNorm(3, momentum=None)
    for _ in range(2):
        np.testing.assert_array_equal(sync(x), bn(x))
        np.testing.assert_array_equal(sync.backward(x), bn.backward(x))
    np.testing.assert_array_equal(sync.weight.grad, bn.weight.grad)
    np.testing.assert_array_equal(sync.running_var, bn.running_var)
    assert int(sync.num_batches_tracked) == 2
    with pytest.raises(ValueError, match=r"SyncBatchNorm: expected input of shape \(N, 3, \*\), got \(8, 4\)"):
        sync(np.ones((8, 4), np.float32))
    assert "SyncBatchNorm(3, eps=1e-05, momentum=None" in repr(sync)


def test_convert_sync_batchnorm_keeps_parameters_buffers_and_settings():
    fastnn.random.seed(0)
    bn = nn.BatchNorm1d(4, momentum=0.3, channels_last=True, dtype=np.float64)
    model = nn.Sequential(nn.Linear(3, 4, dtype=np.float64), bn, nn.ReLU(),
                          nn.Sequential(nn.BatchNorm2d(2, affine=False)))
    model.eval()
    weight, running = bn.weight, bn.running_mean
    out = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert out is model
    sync = model[1]
    assert type(sync) is nn.SyncBatchNorm and type(model[3][0]) is nn.SyncBatchNorm
    assert sync.weight is weight and sync.running_mean is running
    assert (sync.momentum, sync.channels_last, sync.training) == (0.3, True, False)
    assert model[3][0].weight is None and model[3][0].affine is False
    assert model._modules["1"] is sync and list(model.state_dict()) == [
        "0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var",
        "1.num_batches_tracked", "3.0.running_mean", "3.0.running_var", "3.0.num_batches_tracked"]
    single = nn.SyncBatchNorm.convert_sync_batchnorm(nn.BatchNorm2d(5))
    assert type(single) is nn.SyncBatchNorm and single.num_features == 5
    assert type(bn) is nn.BatchNorm1d  # the original layer object is left as it was


@pytest.mark.parametrize("n, replicas, drop_last", [(10, 3, False), (10, 3, True), (12, 4, False), (2, 4, False)])
def test_sampler_shares_are_disjoint_padded_and_reshuffled_per_epoch(n, replicas, drop_last):
    samplers = [dist.DistributedSampler(n, replicas, r, seed=7, drop_last=drop_last) for r in range(replicas)]
    shares = [s.indices() for s in samplers]
    per_rank = n // replicas if drop_last else -(-n // replicas)
    assert all(len(s) == per_rank and len(share) == per_rank for s, share in zip(samplers, shares))
    flat = np.concatenate(shares)
    assert flat.dtype == np.int64 and flat.min() >= 0 and flat.max() < n
    if drop_last:
        assert len(set(flat.tolist())) == len(flat)  # disjoint, a few left out
    else:
        assert set(flat.tolist()) == set(range(n))  # every sample; the padding repeats the first ones
        assert len(flat) - len(set(flat.tolist())) == per_rank * replicas - n
    assert list(iter(samplers[0])) == shares[0].tolist()
    again = [dist.DistributedSampler(n, replicas, r, seed=7, drop_last=drop_last).indices() for r in range(replicas)]
    assert all(np.array_equal(a, b) for a, b in zip(shares, again))  # same seed, same order
    for s in samplers:
        s.set_epoch(1)
    moved = np.concatenate([s.indices() for s in samplers])
    if n >= 10:
        assert not np.array_equal(moved, flat)  # a fresh order each epoch


def test_sampler_without_shuffle_deals_in_order_and_checks_arguments():
    s = dist.DistributedSampler(list(range(7)), num_replicas=2, rank=1, shuffle=False)
    assert s.indices().tolist() == [1, 3, 5, 0]  # padded with the first index
    with pytest.raises(ValueError, match=r"rank must be a rank in \[0, 1\], got 2"):
        dist.DistributedSampler(7, num_replicas=2, rank=2)
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        dist.DistributedSampler(7, 2, 0, shuffle="no")
    with pytest.raises(TypeError, match="dataset must be a length"):
        dist.DistributedSampler(object(), 2, 0)
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        s.set_epoch(-1)


def test_buckets_pack_arrays_of_one_dtype_in_order_up_to_the_cap():
    a = [np.zeros(10, np.float32), np.zeros(300, np.float64), np.zeros(20, np.float32), np.zeros(5, np.float64),
         np.zeros(1000, np.float32), np.zeros(3, np.float32)]
    # cap 1200 bytes: float32 [0, 2] (120 B), [4] (4000 B, alone), [5]; float64 [1] (2400 B), [3]
    assert dist._buckets(a, 1200) == [[0, 2], [4], [5], [1], [3]]
    assert dist._buckets(a, 1 << 20) == [[0, 2, 4, 5], [1, 3]]
    assert dist._buckets(a, 1 << 20, first_cap_bytes=100) == [[0], [2, 4, 5], [1, 3]]
    assert dist._buckets(a, 1 << 20, alone_bytes=2400) == [[4], [0, 2, 5], [1], [3]]  # 4000 B and 2400 B alone


# ------------------------------------------------------------------ the benchmark family


def test_bench_allreduce_family_reports_the_mpi_jobs_figures(monkeypatch, capsys):
    """`fastnn bench --ops allreduce` runs one MPI job for the family's cases (its
    implementations' results are checked in tests/test_bench.py); --quick leaves the
    family out unless --ops names it."""
    _mpiexec()
    from fastnn.bench import runner
    from fastnn.bench.families import allreduce
    from fastnn.cli import main

    ran = []
    monkeypatch.setattr(runner, "run", lambda cases, **kw: ran.append(cases) or [])
    assert main(["bench", "--quick"]) == 0 and main(["bench", "--quick", "--ops", "allreduce"]) == 0
    assert ran[0] and not any(c.family == "allreduce" for c in ran[0])
    assert [c.name for c in ran[1]] == [
        f"allreduce sum {layout} {size}" for size in ("16K", "256K", "4M") for layout in ("one", "mixed200")
    ] + ["ddp_step digits_mlp 1rank 4K", "ddp_step digits_mlp 2ranks 4K"]
    monkeypatch.undo()
    # the job's figures, with a job stubbed out: timed() reports them, the floor timed here
    fake = {case.name: {"ms": {"fastnn": 2.0, "numpy": 4.0, "torch": 8.0, "fastnn_per_array": 3.0},
                        "calls": {"fastnn": 1, "numpy": 1, "torch": 1, "fastnn_per_array": 1},
                        "results": {}} for case in ran[1]}
    monkeypatch.setattr(allreduce, "_measured", {1: fake})
    case = ran[1][0]
    timed = case.build(None).timed(1, 1.0)
    assert timed["fastnn"] == (2e-3, 1) and timed["numpy"] == (4e-3, 1) and "torch" not in timed
    assert timed["floor"][0] > 0


def test_demo_trains_data_parallel_to_the_same_accuracy():
    """`mpiexec -n 2 fastnn demo --distributed`: rank 0 alone, then both ranks, the same
    global batch and steps; both reach the same accuracy (dropout masks differ, so not
    the same bits)."""
    pytest.importorskip("sklearn", reason="the demo trains on scikit-learn's digits")
    import re

    code, out, _ = _run_job(2, "-m", "fastnn", "demo", "--distributed", "--epochs", "4")
    assert code == 0, out
    found = dict(re.findall(r"(\d) ranks?: +test accuracy ([\d.]+)%, +\d+ samples/s", out))
    assert set(found) == {"1", "2"}, out
    one, two = float(found["1"]) / 100, float(found["2"]) / 100
    assert one >= 0.93 and two >= 0.93 and abs(one - two) <= 0.03, out
