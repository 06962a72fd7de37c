"""SyncBatchNorm on unequal per-rank batches equals BatchNorm on their concatenation."""

import numpy as np
import pytest

import fastnn
import fastnn.distributed as dist
from fastnn import nn

TOL = {np.float32: 1e-6, np.float64: 1e-12}


def shard_sizes(world, pattern):
    return [pattern[r % len(pattern)] + r for r in range(world)]


def full_batch(sizes, shape, dtype, seed):
    """The concatenated batch (and a dy), made alike on every rank; mean far from 0."""
    g = np.random.default_rng(seed)
    n = sum(sizes)
    x = (g.standard_normal((n,) + shape) * 2 + 3).astype(dtype)
    dy = g.standard_normal((n,) + shape).astype(dtype)
    return x, dy


def close(actual, expected, tol):
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=0, atol=tol * scale)


def shard(a, sizes, r):
    start = sum(sizes[:r])
    return np.ascontiguousarray(a[start:start + sizes[r]])


CASES = {  # name: (layer class, kwargs, one sample's shape)
    "1d": (nn.BatchNorm1d, {}, (5,)),
    "1d_NCL": (nn.BatchNorm1d, {}, (4, 3)),
    "2d": (nn.BatchNorm2d, {}, (3, 4, 5)),
    "2d_channels_last": (nn.BatchNorm2d, {"channels_last": True}, (4, 5, 3)),
    "relu_fused": (nn.BatchNorm1d, {"activation": "relu"}, (6,)),
    "no_affine_cumulative": (nn.BatchNorm1d, {"affine": False, "momentum": None}, (5,)),
    "weight_only": (nn.BatchNorm2d, {"bias": False, "momentum": 0.3}, (2, 3, 3)),
    "untracked": (nn.BatchNorm1d, {"track_running_stats": False}, (5,)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_backward_and_running_stats_equal_batchnorm_on_the_whole_batch(rank, world, dtype, case):
    cls, kwargs, shape = CASES[case]
    channels = shape[-1] if kwargs.get("channels_last") else shape[0]
    sizes = shard_sizes(world, [3, 6, 2, 5])  # unequal shards
    reference = cls(channels, dtype=dtype, **kwargs)
    sync = nn.SyncBatchNorm(channels, dtype=dtype, **kwargs)
    if reference.weight is not None:
        reference.weight.data[...] = np.random.default_rng(7).standard_normal(channels)
    if reference.bias is not None:
        reference.bias.data[...] = 0.5
    sync.load_state_dict(reference.state_dict())
    tol = TOL[dtype]
    for step in range(2):  # twice: the running statistics move on from the first step's
        x, dy = full_batch(sizes, shape, dtype, seed=step)
        y_ref = reference(x)
        dx_ref = reference.backward(dy)
        y = sync(shard(x, sizes, rank))
        close(y, shard(y_ref, sizes, rank), tol)
        dx = sync.backward(shard(dy, sizes, rank))
        close(dx, shard(dx_ref, sizes, rank), tol)
    if reference.track_running_stats:
        close(sync.running_mean, reference.running_mean, tol)
        close(sync.running_var, reference.running_var, tol)
        assert int(sync.num_batches_tracked) == int(reference.num_batches_tracked) == 2
    # the weight and bias gradients are each rank's share: their sum is the whole batch's
    for p_sync, p_ref in zip(sync.parameters(), reference.parameters()):
        total = p_sync.grad.copy()
        dist.all_reduce(total)
        close(total, p_ref.grad, tol)


@pytest.mark.parametrize("first", [1, 0])
def test_a_rank_with_one_sample_or_none(rank, world, first):
    sizes = [first] + [3] * (world - 1)
    x, dy = full_batch(sizes, (4,), np.float64, seed=3)
    reference, sync = nn.BatchNorm1d(4, dtype=np.float64), nn.SyncBatchNorm(4, dtype=np.float64)
    y_ref = reference(x)
    dx_ref = reference.backward(dy)
    y = sync(shard(x, sizes, rank))
    dx = sync.backward(shard(dy, sizes, rank))
    assert y.shape == (sizes[rank], 4)
    close(y, shard(y_ref, sizes, rank), 1e-12)
    close(dx, shard(dx_ref, sizes, rank), 1e-12)
    close(sync.running_var, reference.running_var, 1e-12)


def test_one_value_per_channel_over_every_rank_is_refused_and_moves_nothing(rank):
    sync = nn.SyncBatchNorm(3)
    x = np.ones((1 if rank == 0 else 0, 3), np.float32)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        sync(x)
    np.testing.assert_array_equal(sync.running_var, 1.0)
    assert int(sync.num_batches_tracked) == 0
    with pytest.raises(RuntimeError, match="before forward"):
        sync.backward(x)


def test_eval_uses_the_running_statistics_without_communicating(rank):
    sync = nn.SyncBatchNorm(3, dtype=np.float64)
    sync.running_mean[...] = [1.0, 2.0, 3.0]
    sync.eval()
    x = np.full((2 + rank, 3), 2.0)  # each rank a different batch: no collective may run
    y = sync(x)
    np.testing.assert_allclose(y, np.broadcast_to((2.0 - np.array([1, 2, 3])) / np.sqrt(1 + 1e-5), y.shape))
    np.testing.assert_allclose(sync.backward(np.ones_like(y)), 1 / np.sqrt(1 + 1e-5))


def test_convert_sync_batchnorm_in_a_model_trains_as_the_whole_batch(rank, world):
    def model():
        fastnn.random.seed(0)
        return nn.Sequential(nn.Linear(4, 6, dtype=np.float64), nn.BatchNorm1d(6, dtype=np.float64), nn.ReLU(),
                             nn.Linear(6, 2, dtype=np.float64))

    reference, converted = model(), nn.SyncBatchNorm.convert_sync_batchnorm(model())
    assert type(converted[1]) is nn.SyncBatchNorm and type(reference[1]) is nn.BatchNorm1d
    assert [k for k in converted.state_dict()] == [k for k in reference.state_dict()]
    sizes = shard_sizes(world, [2, 5])
    x, _ = full_batch(sizes, (4,), np.float64, seed=5)
    dy = np.random.default_rng(6).standard_normal((sum(sizes), 2))
    y_ref = reference(x)
    reference.backward(dy)
    y = converted(shard(x, sizes, rank))
    converted.backward(shard(dy, sizes, rank))
    close(y, shard(y_ref, sizes, rank), 1e-12)
    for p, p_ref in zip(converted.parameters(), reference.parameters()):
        total = p.grad.copy()
        dist.all_reduce(total)
        close(total, p_ref.grad, 1e-12)
