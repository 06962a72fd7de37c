"""A job whose rank 1 raises in the middle of a training step (run by
tests/test_distributed.py under mpiexec): the other ranks are then waiting in the
gradients' all-reduce, and the job must end with a non-zero status, not hang."""

import numpy as np

import fastnn
import fastnn.distributed as dist
from fastnn import nn

dist.init_process_group("mpi")
rank = dist.get_rank()
fastnn.random.seed(0)
model = dist.DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
loss_fn = nn.MSELoss()
x, target = np.ones((4, 8), np.float32), np.zeros((4, 4), np.float32)
for step in range(3):
    loss = loss_fn(model(x), target)
    if step == 1 and rank == 1:
        raise RuntimeError("rank 1 fails on purpose")
    model.backward(loss_fn.backward())
    print(f"rank {rank} step {step} done", flush=True)
print(f"rank {rank} finished", flush=True)
