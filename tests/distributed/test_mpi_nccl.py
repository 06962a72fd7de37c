"""The NCCL process group on CuPy arrays: needs CuPy and a GPU per rank of the node
(skipped otherwise, as on CPU-only machines)."""

import numpy as np
import pytest

import fastnn.distributed as dist

pytestmark = pytest.mark.cuda


@pytest.fixture
def nccl_group(world):
    cupy = pytest.importorskip("cupy")
    try:
        devices = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # no driver
        pytest.skip(f"no CUDA device ({exc})")
    from mpi4py import MPI

    local = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED)
    per_node = local.Get_size()
    local.Free()
    if devices < per_node:
        pytest.skip(f"NCCL needs a GPU per rank: {per_node} ranks on this node, {devices} GPUs")
    dist.destroy_process_group()
    dist.init_process_group("nccl")
    yield cupy
    dist.destroy_process_group()
    dist.init_process_group("mpi")


def test_all_reduce_broadcast_and_all_gather_on_cupy_arrays(nccl_group, rank, world):
    cupy = nccl_group
    assert dist.get_backend() == "nccl"
    small = [cupy.full(s, rank + 1.0, cupy.float32) for s in [(3,), (2, 2), (5,)] * 10]
    large = cupy.arange(1 << 20, dtype=cupy.float64) * (rank + 1)
    dist.all_reduce(small + [large], bucket_cap_mb=1)
    total = world * (world + 1) / 2
    for a in small:
        np.testing.assert_array_equal(cupy.asnumpy(a), total)
    np.testing.assert_array_equal(cupy.asnumpy(large), np.arange(1 << 20) * total)
    m = cupy.full(4, float(rank))
    work = dist.all_reduce([m], op="mean", async_op=True)
    work.wait()
    np.testing.assert_allclose(cupy.asnumpy(m), (world - 1) / 2)
    b = cupy.full((2, 3), rank, cupy.int64)
    dist.broadcast([b], src=world - 1)
    np.testing.assert_array_equal(cupy.asnumpy(b), world - 1)
    g = dist.all_gather(cupy.full(3, rank, cupy.float32))
    np.testing.assert_array_equal(cupy.asnumpy(g), np.repeat(np.arange(world), 3).reshape(world, 3))
    host = np.ones(3)  # NumPy arrays still travel over MPI
    dist.all_reduce(host)
    np.testing.assert_array_equal(host, world)
    with pytest.raises(TypeError, match="mixes NumPy and CuPy"):
        dist.all_reduce([host, m])
    dist.barrier()


def test_cupy_arrays_need_the_nccl_backend(world):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        pytest.skip(f"no CUDA device ({exc})")
    with pytest.raises(TypeError, match=r"init_process_group\('nccl'\)"):
        dist.all_reduce([cupy.ones(3)])
