"""all_reduce, broadcast, all_gather and the process group, on every rank of an MPI job."""

import numpy as np
import pytest

import fastnn.distributed as dist
from fastnn.nn import Parameter

SHAPES_SMALL = [(3,), (2, 5), (7,), (1,), (4, 4, 2), ()] * 20  # 120 small arrays
SHAPES_LARGE = [(1 << 20,), (300, 1000), (1 << 19,)]


def rank_arrays(r, shapes, dtype, seed):
    """Rank r's arrays: the same on every rank that asks, so each rank can compute the sum."""
    g = np.random.default_rng([seed, r])
    if np.dtype(dtype).kind == "i":
        return [g.integers(-1000, 1000, s).astype(dtype) for s in shapes]
    return [g.standard_normal(s).astype(dtype) for s in shapes]


def test_rank_and_world_size_match_the_launcher(rank, world):
    import os

    assert world == int(os.environ.get("PMI_SIZE") or os.environ["OMPI_COMM_WORLD_SIZE"])
    ranks = dist.all_gather(np.array([rank], np.int64))
    assert ranks.ravel().tolist() == list(range(world))
    assert dist.get_backend() == "mpi"
    dist.barrier()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
@pytest.mark.parametrize("cap_mb", [25, 0.01])
def test_all_reduce_many_small_and_a_few_large_equals_numpy_sum(rank, world, dtype, cap_mb):
    shapes = SHAPES_SMALL + SHAPES_LARGE if dtype == np.float32 else SHAPES_SMALL + SHAPES_LARGE[1:2]
    mine = rank_arrays(rank, shapes, dtype, seed=1)
    ids = [id(a) for a in mine]
    expected = [sum(parts.astype(np.float64) for parts in zip_)
                for zip_ in zip(*[rank_arrays(r, shapes, dtype, seed=1) for r in range(world)])]
    assert dist.all_reduce(mine, bucket_cap_mb=cap_mb) is None
    assert [id(a) for a in mine] == ids  # in place
    tol = {np.float32: 1e-6, np.float64: 1e-13}.get(dtype, 0)
    for got, want in zip(mine, expected):
        assert got.dtype == dtype and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * world * 4)


def test_all_reduce_mean_mixed_dtypes_and_parameters(rank, world):
    f32 = rank_arrays(rank, [(5,), (3, 3)], np.float32, seed=2)
    f64 = rank_arrays(rank, [(4,), (2,)], np.float64, seed=3)
    param = Parameter(rank_arrays(rank, [(6,)], np.float64, seed=4)[0])
    arrays = [f32[0], f64[0], f32[1], param, f64[1]]
    every = [[*rank_arrays(r, [(5,), (3, 3)], np.float32, seed=2), *rank_arrays(r, [(4,), (2,)], np.float64, seed=3),
              *rank_arrays(r, [(6,)], np.float64, seed=4)] for r in range(world)]
    means = [np.mean([e[i].astype(np.float64) for e in every], axis=0) for i in range(5)]
    dist.all_reduce(arrays, op="mean")
    np.testing.assert_allclose(f32[0], means[0], rtol=1e-6)
    np.testing.assert_allclose(f32[1], means[1], rtol=1e-6)
    np.testing.assert_allclose(f64[0], means[2], rtol=1e-14)
    np.testing.assert_allclose(f64[1], means[3], rtol=1e-14)
    np.testing.assert_allclose(param.data, means[4], rtol=1e-14)


def test_all_reduce_async_returns_work_that_finishes_on_wait(rank, world):
    a = np.full(1000, rank + 1.0)
    b = np.full((3, 4), 2.0 * rank, np.float32)
    work = dist.all_reduce([a, b], async_op=True, bucket_cap_mb=0.001)
    assert isinstance(work, dist.Work)
    x = np.arange(10.0).sum()  # other work while the messages travel
    work.wait()
    assert work.is_completed()
    work.wait()  # a second wait does nothing more
    total = world * (world + 1) / 2
    assert x == 45.0
    np.testing.assert_array_equal(a, np.full(1000, total))
    np.testing.assert_array_equal(b, np.full((3, 4), 2.0 * (total - world), np.float32))
    c = [np.full(7, float(rank)), np.full(5, float(rank))]  # one packed bucket, a mean
    work = dist.all_reduce(c, op="mean", async_op=True)
    while not work.is_completed():  # polling alone finishes it: the results are in the arrays
        pass
    np.testing.assert_allclose(c[0], (world - 1) / 2)
    np.testing.assert_allclose(c[1], (world - 1) / 2)


def test_all_reduce_nothing_and_empty_arrays():
    dist.all_reduce([])
    e = np.zeros((0, 3))
    dist.all_reduce([e, np.ones(2)])
    assert e.shape == (0, 3)


def test_broadcast_from_any_rank_any_dtype(rank, world):
    src = world - 1
    arrays = [np.full(5, rank, np.float32), np.full((2, 3), rank, np.int64), np.array(rank, np.float64),
              np.full(4, rank % 2 == 1), np.full(3, rank, np.uint8)]
    dist.broadcast(arrays, src=src)
    for a in arrays:
        assert np.all(a == a.dtype.type(src)), a
    single = np.full(3, float(rank))
    dist.broadcast(single)  # one array, from rank 0
    np.testing.assert_array_equal(single, 0.0)


def test_all_gather_stacks_every_ranks_array(rank, world):
    got = dist.all_gather(np.full((2, 3), rank, np.float32))
    assert got.shape == (world, 2, 3) and got.dtype == np.float32
    for r in range(world):
        np.testing.assert_array_equal(got[r], r)


def test_bad_arguments_are_refused_before_anything_moves():
    a = np.ones(4)
    with pytest.raises(ValueError, match="op must be"):
        dist.all_reduce([a], op="max")
    with pytest.raises(TypeError, match="op='mean' needs float"):
        dist.all_reduce([np.ones(3, np.int64)], op="mean")
    with pytest.raises(TypeError, match=r"arrays\[1\] has dtype float16"):
        dist.all_reduce([a, np.ones(2, np.float16)])
    with pytest.raises(TypeError, match=r"arrays\[0\] must be a NumPy or CuPy array"):
        dist.all_reduce([[1.0, 2.0]])
    with pytest.raises(TypeError, match="arrays must be an array or a list"):
        dist.all_reduce(3.0)
    with pytest.raises(ValueError, match="C-contiguous"):
        dist.all_reduce([np.ones((4, 4))[:, ::2]])
    ro = np.ones(3)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        dist.all_reduce([ro])
    with pytest.raises(ValueError, match=r"arrays\[0\] and arrays\[1\] overlap"):
        dist.all_reduce([a[:3], a[2:]])
    with pytest.raises(ValueError, match="overlap"):
        dist.broadcast([a, a])
    with pytest.raises(ValueError, match="src must be a rank"):
        dist.broadcast([a], src=dist.get_world_size())
    with pytest.raises(TypeError, match="async_op must be a bool"):
        dist.all_reduce([a], async_op=1)
    with pytest.raises(ValueError, match="bucket_cap_mb must be > 0"):
        dist.all_reduce([a], bucket_cap_mb=0)
    np.testing.assert_array_equal(a, 1.0)
    with pytest.raises(RuntimeError, match="already called"):
        dist.init_process_group("mpi")


def test_a_setup_failure_on_one_rank_raises_on_every_rank(rank, world):
    from mpi4py import MPI

    def attempt():
        if rank == world - 1:
            raise OSError("no device here")
        return rank

    with pytest.raises(RuntimeError, match=rf"rank {world - 1}: OSError: no device here"):
        dist._agree(MPI.COMM_WORLD, attempt)
    assert dist._agree(MPI.COMM_WORLD, lambda: rank * 2) == rank * 2


def test_nccl_unique_id_is_rank_0s_on_every_rank(rank):
    from mpi4py import MPI

    made = []

    def get_unique_id():  # stands in for cupy.cuda.nccl.get_unique_id
        made.append(rank)
        return (rank + 100,) * 128

    assert dist._nccl_unique_id(MPI.COMM_WORLD, get_unique_id) == (100,) * 128
    assert made == ([0] if rank == 0 else [])

    def broken():
        raise RuntimeError("NCCL error: unhandled system error")

    with pytest.raises(RuntimeError, match="rank 0: RuntimeError: NCCL error"):
        dist._nccl_unique_id(MPI.COMM_WORLD, broken)


def test_nccl_without_a_gpu_fails_on_every_rank_and_mpi_still_works():
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            pytest.skip("a GPU is here: the cuda-marked tests cover NCCL")
    except Exception:
        pass
    dist.destroy_process_group()
    try:
        with pytest.raises(RuntimeError, match="setting up failed on"):
            dist.init_process_group("nccl")
        assert not dist.is_initialized()
    finally:
        dist.init_process_group("mpi")
    a = np.ones(3)
    dist.all_reduce(a)
    np.testing.assert_array_equal(a, dist.get_world_size())
