"""``mpiexec -n 2 fastnn demo --distributed``: the demo's classifier trained data-parallel.

Rank 0 first trains the model alone; then every rank trains a fresh copy together
(DistributedDataParallel, SyncBatchNorm, DistributedSampler) with the same global batch,
number of steps, initial weights and optimizer, each rank on its share of every batch.
Rank 0 prints both runs' test accuracy and samples/s.
"""

import time

import numpy as np
from threadpoolctl import threadpool_limits

import fastnn
import fastnn.distributed as dist
from fastnn import nn, optim

EPOCHS, BATCH, LR = 20, 64, 1e-3


def digits_problem():
    """The demo's data and MLP (see ``fastnn demo``): scikit-learn's handwritten digits,
    split and standardized as the demo does, and a function making the demo's MLP:
    (x_train, y_train, x_test, y_test, make_model, description)."""
    from .demo import MISSING_EXAMPLES, build_mlp, load_digits_data

    try:
        data = load_digits_data()
    except ImportError:
        raise SystemExit(MISSING_EXAMPLES) from None
    x_train, y_train, x_test, y_test = (data[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    return (x_train, y_train, x_test, y_test, build_mlp,
            "the demo's digits MLP (64-256-128-10; Linear-BatchNorm-ReLU-Dropout blocks) on "
            f"scikit-learn's digits, {len(x_train)} training and {len(x_test)} test images")


def train(model, x, y, sampler, batch, epochs):
    """AdamW over `epochs` of this rank's shares, `batch` rows a step. Returns (samples
    this rank trained on, seconds)."""
    opt = optim.AdamW(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    samples, t0 = 0, time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        mine = sampler.indices()
        for i in range(0, len(mine), batch):
            idx = mine[i:i + batch]
            opt.zero_grad()
            loss_fn(model(x[idx]), y[idx])
            model.backward(loss_fn.backward(), input_grad=False)
            opt.step()
            samples += len(idx)
    return samples, time.perf_counter() - t0


def accuracy(model, x, y):
    model.eval()
    return float(np.mean(np.argmax(model(x), axis=1) == y))


def _wait(comm):
    """Waits at a barrier for the other ranks without keeping a core busy."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def main(epochs=EPOCHS, problem=digits_problem):
    """Runs both trainings; returns {"1": (accuracy, samples/s), "<world>": ...} on rank 0."""
    dist.init_process_group("mpi")
    group = dist._group
    rank, world = group.rank, group.size
    x_train, y_train, x_test, y_test, make_model, description = problem()
    threads = fastnn.get_num_threads()
    results = {}
    if rank == 0:
        print(f"Data-parallel training of {description}: global batch {BATCH}, {epochs} epochs, "
              f"AdamW (lr {LR}), {threads} fastnn threads per process.")
        fastnn.random.seed(0)
        model = make_model()
        sampler = dist.DistributedSampler(len(x_train), num_replicas=1, rank=0, seed=0)
        samples, seconds = train(model, x_train, y_train, sampler, BATCH, epochs)
        results[1] = (accuracy(model, x_test, y_test), samples / seconds)
        print(f"  1 rank:  test accuracy {results[1][0]:.1%}, {results[1][1]:7.0f} samples/s "
              f"({seconds:.2f} s)", flush=True)
    _wait(group.comm)  # the other ranks sleep while rank 0 trains alone
    if world == 1:
        print("  (one process: start it as `mpiexec -n 2 fastnn demo --distributed` to train on 2)")
    else:
        # the cores shared out between the ranks on this machine, for fastnn and for
        # NumPy's BLAS: BLAS threads of two ranks spinning on the same cores made a
        # step 30 times slower
        per_rank = max(1, threads // min(world, _ranks_on_this_node(group)))
        fastnn.set_num_threads(per_rank)
        fastnn.random.seed(0)  # the same initial weights (rank 0's are broadcast anyway)
        # SyncBatchNorm keeps the running statistics equal: no buffer broadcast each step
        model = dist.DistributedDataParallel(nn.SyncBatchNorm.convert_sync_batchnorm(make_model()),
                                             broadcast_buffers=False)
        sampler = dist.DistributedSampler(len(x_train), seed=0)
        with threadpool_limits(per_rank, user_api="blas"):
            samples, seconds = train(model, x_train, y_train, sampler, BATCH // world, epochs)
        total = np.array([samples], np.int64)
        dist.all_reduce(total)
        seconds = float(dist.all_gather(np.array([seconds]))[:, 0].max())  # the slowest rank's
        if rank == 0:
            results[world] = (accuracy(model.module, x_test, y_test), int(total[0]) / seconds)
            print(f"  {world} ranks: test accuracy {results[world][0]:.1%}, {results[world][1]:7.0f} "
                  f"samples/s ({seconds:.2f} s), {results[world][1] / results[1][1]:.2f}x one rank's "
                  f"({per_rank} fastnn and BLAS threads per rank)", flush=True)
        fastnn.set_num_threads(threads)
    dist.barrier()
    dist.destroy_process_group()
    return results


def _ranks_on_this_node(group):
    local = group.comm.Split_type(group.MPI.COMM_TYPE_SHARED)
    n = local.Get_size()
    local.Free()
    return n
