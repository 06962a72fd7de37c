"""DistributedDataParallel: k steps on every rank's share equal one process on the whole batch."""

import contextlib

import numpy as np
import pytest

import fastnn
import fastnn.distributed as dist
from fastnn import nn, optim

D_IN, D_OUT, PER_RANK = 6, 3, 4
F64 = np.float64


def model(kind, bn=nn.BatchNorm1d):
    """float64 models, initialized from fastnn's global seed:
    mlp     nested Sequentials, Linear-Tanh / Linear-ReLU / Linear
    bn_mlp  Linear-BatchNorm-ReLU-Linear (bn: the batch-norm class)
    branch  two Linear branches added: not a Sequential"""
    if kind == "mlp":
        return nn.Sequential(nn.Sequential(nn.Linear(D_IN, 16, dtype=F64), nn.Tanh()),
                             nn.Sequential(nn.Linear(16, 8, dtype=F64), nn.ReLU()), nn.Linear(8, D_OUT, dtype=F64))
    if kind == "bn_mlp":
        return nn.Sequential(nn.Linear(D_IN, 16, dtype=F64), bn(16, dtype=F64), nn.ReLU(),
                             nn.Linear(16, D_OUT, dtype=F64))
    return TwoBranches()


class TwoBranches(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(D_IN, D_OUT, dtype=F64)
        self.b = nn.Linear(D_IN, D_OUT, dtype=F64)

    def forward(self, x):
        return self.a(x) + 0.5 * self.b(x)

    def backward(self, dy, *, input_grad=True):
        dxa = self.a.backward(dy, input_grad=input_grad)
        dxb = self.b.backward(0.5 * dy, input_grad=input_grad)
        return dxa + dxb if input_grad else None


def batches(world, steps, seed=0):
    """(x, target) of every step: the whole batch, world * PER_RANK rows."""
    g = np.random.default_rng(seed)
    return [(g.standard_normal((world * PER_RANK, D_IN)), g.standard_normal((world * PER_RANK, D_OUT)))
            for _ in range(steps)]


def rows(a, rank):
    return np.ascontiguousarray(a[rank * PER_RANK:(rank + 1) * PER_RANK])


def train(net, data, rank=None, micro=1, ddp=None):
    """SGD with momentum on the MSE, on the whole batch (rank None) or this rank's rows
    of it; micro > 1: each step's rows in that many micro-batches, their gradients
    summed (under ddp.no_sync() but the last)."""
    opt = optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    loss_fn = nn.MSELoss()
    for x, t in data:
        if rank is not None:
            x, t = rows(x, rank), rows(t, rank)
        opt.zero_grad()
        for i in range(micro):
            part = slice(i * len(x) // micro, (i + 1) * len(x) // micro)
            accumulating = ddp is not None and i < micro - 1
            with ddp.no_sync() if accumulating else contextlib.nullcontext():
                loss_fn(net(x[part]), t[part])
                net.backward(loss_fn.backward(), input_grad=False)
        opt.step()


def assert_same_state(a, b, tol=1e-12):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        np.testing.assert_allclose(sa[k], sb[k], rtol=0, atol=tol, err_msg=k)


def assert_equal_on_every_rank(net, world):
    for name, a in net.state_dict().items():
        every = dist.all_gather(np.ascontiguousarray(a))
        for r in range(world):
            np.testing.assert_array_equal(every[r], every[0], err_msg=name)


@pytest.mark.parametrize("cap_mb", [25, 0.0005])  # one bucket; about one per parameter
@pytest.mark.parametrize("kind", ["mlp", "bn_mlp", "branch"])
def test_k_steps_equal_single_process_training_on_the_whole_batch(rank, world, kind, cap_mb):
    data = batches(world, steps=3)
    fastnn.random.seed(100 + rank)  # different initial weights: DDP broadcasts rank 0's
    ddp = dist.DistributedDataParallel(model(kind, nn.SyncBatchNorm), bucket_cap_mb=cap_mb)
    reference = model(kind)
    reference.load_state_dict(ddp.module.state_dict())
    train(ddp, data, rank)
    train(reference, data)
    assert_same_state(ddp.module, reference)  # running statistics included
    assert_equal_on_every_rank(ddp, world)


@pytest.mark.parametrize("kind", ["mlp", "bn_mlp"])
def test_gradient_accumulation_with_no_sync(rank, world, kind):
    data = batches(world, steps=2, seed=1)
    fastnn.random.seed(0)
    ddp = dist.DistributedDataParallel(model(kind, nn.SyncBatchNorm))
    reference = model(kind)
    reference.load_state_dict(ddp.module.state_dict())
    train(ddp, data, rank, micro=2, ddp=ddp)
    # the reference: each step's whole batch in the same two micro-batches (rows
    # [0:2] of every rank, then rows [2:4]), gradients summed
    halves = [(np.concatenate([rows(x, r)[i * 2:(i + 1) * 2] for i in range(2) for r in range(world)]),
               np.concatenate([rows(t, r)[i * 2:(i + 1) * 2] for i in range(2) for r in range(world)]))
              for x, t in data]
    train(reference, halves, micro=2)
    assert_same_state(ddp.module, reference)
    assert_equal_on_every_rank(ddp, world)


def test_no_sync_keeps_local_gradients_until_the_next_synced_backward(rank, world):
    fastnn.random.seed(0)
    ddp = dist.DistributedDataParallel(nn.Linear(2, 1, bias=False, dtype=F64))
    x = np.full((1, 2), float(rank + 1))
    with ddp.no_sync():
        ddp(x)
        ddp.backward(np.ones((1, 1)))
    np.testing.assert_array_equal(ddp.module.weight.grad, x)  # this rank's own
    ddp(x)
    ddp.backward(np.ones((1, 1)))
    # (2 (r + 1) averaged over the ranks) = r_mean + 1, doubled
    np.testing.assert_allclose(ddp.module.weight.grad, np.full((1, 2), world + 1.0))


def test_parameters_and_buffers_come_from_rank_0_and_state_dict_keys_are_torchs(rank, world):
    fastnn.random.seed(rank)
    inner = model("bn_mlp")
    inner[1].running_mean[...] = rank
    inner[1].num_batches_tracked[...] = 5 + rank
    ddp = dist.DistributedDataParallel(inner)
    assert list(ddp.state_dict()) == ["module." + k for k in inner.state_dict()]
    assert_equal_on_every_rank(ddp, world)
    np.testing.assert_array_equal(inner[1].running_mean, 0.0)
    assert int(inner[1].num_batches_tracked) == 5


def test_buffers_come_from_rank_0_at_each_training_forward(rank, world):
    ddp = dist.DistributedDataParallel(nn.Sequential(nn.BatchNorm1d(D_IN, dtype=F64)))  # per-rank statistics
    g = np.random.default_rng(rank)
    ddp(g.standard_normal((4, D_IN)))
    first = dist.all_gather(ddp.module[0].running_mean)
    assert not np.array_equal(first[0], first[1])  # each rank's batch moved its own
    x = g.standard_normal((4, D_IN))
    ddp(x)  # starts from rank 0's running statistics
    np.testing.assert_allclose(ddp.module[0].running_mean, 0.9 * first[0] + 0.1 * x.mean(0), rtol=1e-14)
    before = ddp.module[0].running_mean.copy()
    ddp.eval()
    ddp(np.zeros((2, D_IN)))  # eval: no broadcast
    np.testing.assert_array_equal(ddp.module[0].running_mean, before)


def test_frozen_parameters_are_left_alone(rank):
    fastnn.random.seed(0)
    net = model("mlp")
    net[2].requires_grad_(False)
    ddp = dist.DistributedDataParallel(net)
    ddp(np.ones((2, D_IN)))
    ddp.backward(np.ones((2, D_OUT)))
    assert net[2].weight.grad is None and net[2].bias.grad is None
    assert net[0][0].weight.grad is not None
    net[2].requires_grad_(True)  # the buckets follow the change
    ddp(np.ones((2, D_IN)) * (rank + 1))
    ddp.backward(np.ones((2, D_OUT)))
    every = dist.all_gather(net[2].weight.grad)
    np.testing.assert_array_equal(every[-1], every[0])


def test_models_that_differ_between_ranks_are_refused_on_every_rank(rank):
    with pytest.raises(ValueError, match="rank 1's model differs from rank 0's"):
        dist.DistributedDataParallel(nn.Linear(3, 2 if rank != 1 else 4))


def test_bad_arguments():
    with pytest.raises(TypeError, match="module must be a fastnn.nn.Module"):
        dist.DistributedDataParallel(lambda x: x)
    with pytest.raises(TypeError, match="broadcast_buffers must be a bool"):
        dist.DistributedDataParallel(nn.Linear(2, 2), broadcast_buffers="yes")
    with pytest.raises(ValueError, match="bucket_cap_mb must be > 0"):
        dist.DistributedDataParallel(nn.Linear(2, 2), bucket_cap_mb=-1)


def dropout_masks(seed, wrap, n=64, steps=2):
    fastnn.random.seed(seed)
    net = nn.Sequential(nn.Linear(4, n), nn.Dropout(0.5))
    net = dist.DistributedDataParallel(net) if wrap else net
    out = []
    for _ in range(steps):
        y = net(np.ones((3, 4), np.float32))
        out.append(y != 0)
        net.backward(np.ones_like(y))
    return np.stack(out)


def test_dropout_masks_differ_between_ranks_and_repeat_with_the_seed(rank, world):
    masks = dropout_masks(seed=3, wrap=True)
    assert 0.3 < masks.mean() < 0.7
    every = dist.all_gather(masks)
    for r in range(1, world):
        assert not np.array_equal(every[r], every[0])
        assert abs((every[r] == every[0]).mean() - 0.5) < 0.15  # independent, not shifted copies
    np.testing.assert_array_equal(dropout_masks(seed=3, wrap=True), masks)  # reproducible
    if rank == 0:  # rank 0 draws what one process would
        np.testing.assert_array_equal(dropout_masks(seed=3, wrap=False), masks)


def test_buckets_start_while_earlier_layers_still_run_their_backward():
    fastnn.random.seed(0)
    net = model("mlp")
    ddp = dist.DistributedDataParallel(net, bucket_cap_mb=0.0005)  # a bucket per parameter or two
    first, started = net[0][0], []
    backward = first.backward

    def spy(dy, *, input_grad=True):  # how many reductions were on their way when it ran
        started.append(len(ddp._reducer.pending))
        return backward(dy, input_grad=input_grad)

    first.backward = spy
    ddp(np.ones((2, D_IN)))
    ddp.backward(np.ones((2, D_OUT)), input_grad=False)
    n_buckets = len(ddp._reducer.buckets)
    assert n_buckets >= 4 and started == [n_buckets - 2]  # all but the first layer's (weight, bias)


def test_sampler_defaults_to_this_rank_and_the_world_size(rank, world):
    sampler = dist.DistributedSampler(10 * world + 1, seed=5)
    sampler.set_epoch(2)
    assert sampler.rank == rank and sampler.num_replicas == world and len(sampler) == 11
    every = dist.all_gather(sampler.indices())
    assert sorted(set(every.ravel().tolist())) == list(range(10 * world + 1))  # every sample, padded
    assert every.size == 11 * world
