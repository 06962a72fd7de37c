"""Data-parallel communication and training on 2 ranks over MPI (shared memory on one
machine), float32. The registry times one process; these cases need two, so one MPI
job (``mpiexec -n 2 python -m fastnn.bench.families.allreduce``, started by the first
case that is timed) times them all, every rank calling each implementation in step,
and the cases report its figures (rank 0's times). Each rank runs 1 thread.

  allreduce sum, layouts one (one array) and mixed200 (200 arrays of lognormal sizes,
  the optimizer family's), 16K, 256K and 4M elements per rank in all:
    fastnn            fastnn.distributed.all_reduce(arrays): packed into 25 MB buckets
    numpy             mpi4py, one Allreduce per array (what a NumPy user writes)
    torch             torch.distributed.all_reduce per tensor, gloo backend
    fastnn_per_array  fastnn.distributed.all_reduce called once per array
    floor             the arrays read and written once (an in-place sum's least traffic)

  ddp_step digits_mlp, layouts 1rank and 2ranks: one AdamW step of the training
  family's digits MLP (batch 64 per rank, Dropout 0.1); samples/s = ranks * 64 / time:
    fastnn            DistributedDataParallel(model) (1 rank: the model itself)
    numpy             the training family's hand-written NumPy model, its gradients
                      averaged with mpi4py (one Allreduce per array)
    torch             torch DistributedDataParallel over gloo (1 rank: the model itself)
    floor             the AdamW update's traffic, as in the training family
  On 1 rank, rank 1 waits (sleeping) while rank 0 runs.

The cases exist when mpi4py and mpiexec are installed (``pip install "fastnn[mpi]"``).
Being timed by their own job, they stay out of ``--quick`` (unless --ops names them)
and of the pytest-benchmark suite.
"""

import functools
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..registry import Built, Case, Floor, stream
from . import optim, training

RANKS = 2
SIZES = (1 << 14, 1 << 18, 1 << 22)
LAYOUTS = ("one", "mixed200")
MODEL = "digits_mlp"
JOB_TIMEOUT_S = 600

_measured = {}  # rounds -> the job's results, {case name: {"ms": ..., "calls": ..., "results": ...}}


def mpiexec():
    """The mpiexec beside this Python (the mpich wheel's) or on PATH, if mpi4py is there."""
    try:
        import mpi4py  # noqa: F401  (not initialized: no MPI in the bench process)
    except ImportError:
        return None
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


def case_name(op, layout, n):
    return Case("allreduce", op, layout, None, n=n).name


# --------------------------------------------------------------------- the cases


def _job(rounds):
    """The MPI job's figures for `rounds` rounds; rounds None: any run's results (a job
    that only runs each implementation once, if none ran)."""
    if rounds is None:
        if _measured:
            return next(iter(_measured.values()))
        rounds = 0
    if rounds not in _measured:
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "allreduce.json")
            env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
            cmd = [mpiexec(), "-n", str(RANKS), sys.executable, "-m", __name__, str(rounds), out]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S)
            if proc.returncode != 0:
                raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n"
                                   f"{(proc.stdout + proc.stderr)[-4000:]}")
            with open(out) as f:
                _measured[rounds] = json.load(f)
    return _measured[rounds]


def _make(op, layout, extras, floor_pass, n, torch):
    name = case_name(op, layout, n)
    names = ["fastnn", "numpy"] + (["torch"] if torch is not None else []) + [k for k, _ in extras]

    def result(impl):
        got = _job(None)[name]["results"].get(impl)
        if got is None:
            raise RuntimeError(f"the MPI job did not run {impl} (torch missing there?)")
        return np.array(got)

    floor = Floor(floor_pass)

    def timed(rounds, budget_s):
        """The job's times, and the floor's timed here."""
        row = _job(rounds)[name]
        times = {k: (row["ms"][k] / 1e3, row["calls"][k]) for k in names}
        floor()
        floor_s = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            floor()
            floor_s.append(time.perf_counter() - t0)
        times["floor"] = (float(np.median(floor_s)), rounds)
        return times

    impls = {k: functools.partial(result, k) for k in names}
    impls["floor"] = floor
    check = _fresh_classifier_loss if op.startswith("ddp_step") else None
    return Built(impls, floor, random_check=check, timed=timed)


def _fresh_classifier_loss(outputs):
    """Dropout masks differ between the implementations: each first step's loss is a
    fresh 10-class classifier's (near ln 10)."""
    (loss,) = outputs
    assert np.isfinite(loss) and abs(float(loss) - np.log(10)) < 0.5, float(loss)


def _allreduce_case(layout, n, torch):
    return _make("allreduce sum", layout, (("fastnn_per_array", "fastnn per array"),),
                 stream(inplace=[np.ones(n, np.float32)]), n, torch)


def _ddp_case(layout, n, torch):
    from fastnn import nn

    total = sum(p.numel() for p in training.layers(nn, MODEL, 0.0).parameters())
    return _make(f"ddp_step {MODEL}", layout, (), stream([np.ones(total, np.float32)],  # the training family's
                 inplace=[np.ones(total, np.float32) for _ in range(3)]), n, torch)


def cases():
    if mpiexec() is None:
        return
    for n in SIZES:
        for layout in LAYOUTS:
            yield Case("allreduce", "allreduce sum", layout, functools.partial(_allreduce_case, layout),
                       extras=(("fastnn_per_array", "fastnn per array"),), has_out=False, n=n,
                       in_process=False)
    batch = int(np.prod(training.MODELS[MODEL][0]))
    for layout in ("1rank", "2ranks"):
        yield Case("allreduce", f"ddp_step {MODEL}", layout, functools.partial(_ddp_case, layout),
                   has_out=False, n=batch, in_process=False)


# ---------------------------------------------------------------------- the job


def _lockstep(comm, impls, rounds):
    """Times each implementation `rounds` times, every rank calling it together (a
    barrier first); rank 0's times. Returns {impl: (median ms, calls)} ({} for 0 rounds)."""
    times = {k: [] for k in impls}
    if not rounds:
        return {}
    for fn in impls.values():
        fn()  # warm-up
    for _ in range(rounds):
        for k, fn in impls.items():
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: (float(np.median(v)) * 1e3, len(v)) for k, v in times.items()}


def _allreduce_impls(comm, MPI, tdist, torch, layout, n, rank):
    import fastnn.distributed as dist

    sizes = optim.split_sizes(n, layout)
    fresh = lambda: [np.full(s, rank + 1.0, np.float32) for s in sizes]  # noqa: E731
    arrays = {k: fresh() for k in ("fastnn", "numpy", "torch", "fastnn_per_array")}
    impls = {
        "fastnn": lambda: dist.all_reduce(arrays["fastnn"]),
        "numpy": lambda: [comm.Allreduce(MPI.IN_PLACE, a) for a in arrays["numpy"]],
        "fastnn_per_array": lambda: [dist.all_reduce(a) for a in arrays["fastnn_per_array"]],
    }
    if tdist is not None:
        tensors = [torch.from_numpy(a) for a in arrays["torch"]]
        impls["torch"] = lambda: [tdist.all_reduce(t) for t in tensors]
    results = {}
    for k, fn in impls.items():  # once from the start: every implementation's sums
        fn()
        results[k] = [float(a.astype(np.float64).sum()) for a in arrays[k]]
    return impls, results


def _ddp_impls(comm, MPI, tdist, torch, layout, rank):
    import fastnn
    import fastnn.distributed as dist
    from fastnn import nn, optim as fastnn_optim

    shape = training.MODELS[MODEL][0]
    gen = np.random.default_rng(rank)
    x = gen.standard_normal(shape, dtype=np.float32)
    y = gen.integers(0, 10, shape[0])
    fastnn.random.seed(0)
    model = training.layers(nn, MODEL, training.DROPOUT)
    theirs = None
    if torch is not None:
        torch.manual_seed(0)
        theirs = training.layers(torch.nn, MODEL, training.DROPOUT)
        model.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    state = {k: v.copy() for k, v in model.state_dict().items()}
    if layout == "2ranks":
        model = dist.DistributedDataParallel(model)
        if theirs is not None:
            theirs = torch.nn.parallel.DistributedDataParallel(theirs)
    adamw = dict(lr=training.LR, betas=training.BETAS, eps=training.EPS, weight_decay=training.WEIGHT_DECAY)
    opt, loss_fn = fastnn_optim.AdamW(model.parameters(), **adamw), nn.CrossEntropyLoss()

    def fastnn_step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        return loss

    reference = training.NumpyModel(MODEL, state, training.DROPOUT)
    if layout == "2ranks":
        size = comm.Get_size()
        adamw_update = reference._adamw

        def averaged_adamw(grads):  # the gradients averaged over the ranks, one call per array
            for g in grads:
                comm.Allreduce(MPI.IN_PLACE, g)
                g /= size
            adamw_update(grads)

        reference._adamw = averaged_adamw
    impls = {"fastnn": fastnn_step, "numpy": functools.partial(reference.step, x, y)}
    if theirs is not None:
        impls["torch"] = training.torch_step(torch, theirs, x, y)
    results = {k: float(fn()) for k, fn in impls.items()}  # a first step: a fresh model's loss
    return impls, results


def _gloo(comm, torch):
    """torch.distributed over gloo on loopback, the port chosen by rank 0."""
    import socket

    import torch.distributed as tdist

    port = None
    if comm.Get_rank() == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    port = comm.bcast(port, root=0)
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=comm.Get_rank(),
                             world_size=comm.Get_size())
    return tdist


def _wait_idle(comm):
    """Waits for rank 0 without spinning a core (MPI's barrier polls)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def job(rounds, out):
    """Run by every rank: times every case, rank 0 writes {case name: {"ms", "calls",
    "results"}} to out."""
    import fastnn
    import fastnn.distributed as dist

    dist.init_process_group("mpi")
    group = dist._group
    comm, MPI, rank = group.comm, group.MPI, group.rank
    fastnn.set_num_threads(1)
    try:
        import torch
    except ImportError:
        torch = tdist = None
    else:
        torch.set_num_threads(1)
        tdist = _gloo(comm, torch)
    found = {}
    for n in SIZES:
        for layout in LAYOUTS:
            impls, results = _allreduce_impls(comm, MPI, tdist, torch, layout, n, rank)
            found[case_name("allreduce sum", layout, n)] = (_lockstep(comm, impls, rounds), results)
            del impls
    batch = int(np.prod(training.MODELS[MODEL][0]))
    for layout in ("1rank", "2ranks"):
        if layout == "1rank" and rank != 0:
            _wait_idle(comm)  # while rank 0 runs alone
            continue
        impls, results = _ddp_impls(comm, MPI, tdist, torch, layout, rank)
        if layout == "1rank":
            row = _lockstep(MPI.COMM_SELF, impls, rounds)
            _wait_idle(comm)
        else:
            row = _lockstep(comm, impls, rounds)
        found[case_name(f"ddp_step {MODEL}", layout, batch)] = (row, results)
        del impls  # torch's DDP holds the gloo group: dropped before the group is destroyed
    if rank == 0:
        with open(out, "w") as f:
            json.dump({name: {"ms": {k: ms for k, (ms, _) in row.items()},
                              "calls": {k: calls for k, (_, calls) in row.items()}, "results": results}
                       for name, (row, results) in found.items()}, f)
    _close(comm, tdist, dist)


def _close(comm, tdist, dist):
    """Tears gloo down while the interpreter is whole and both ranks are done with it:
    a gloo group (or its TCP store, hosted by rank 0) freed during interpreter exit, or
    while the other rank still uses it, can abort the process from gloo's threads."""
    if tdist is not None:
        gc.collect()  # the last references to the group (a model's reducer) go now
        comm.Barrier()
        tdist.destroy_process_group()
        gc.collect()
        comm.Barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    job(int(sys.argv[1]), sys.argv[2])
