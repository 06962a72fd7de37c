"""Data-parallel training over MPI (NumPy arrays) and NCCL (CuPy arrays): ``fastnn.distributed``.

Run one process per rank with ``mpiexec -n 4 python train.py``; each calls
:func:`init_process_group` and then works on its own share of every batch::

    import fastnn.distributed as dist
    dist.init_process_group("mpi")                 # "nccl": CuPy arrays over NCCL
    model = dist.DistributedDataParallel(model)    # same weights on every rank
    sampler = dist.DistributedSampler(len(x_train), seed=0)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for idx in np.array_split(sampler.indices(), steps):
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            model.backward(loss_fn.backward(), input_grad=False)  # gradients averaged
            opt.step(); opt.zero_grad()

NumPy arrays always travel over MPI (mpi4py, ``pip install "fastnn[mpi]"``), CuPy arrays
over NCCL (``cupy.cuda.nccl``; the NCCL unique id is broadcast over MPI), so the
processes are always started by an MPI launcher. Every rank must call the collectives in
the same order with arrays of the same shapes and dtypes, as MPI requires.

Collectives take lists of arrays and work in place. Arrays are packed into flat buckets
of up to 25 MB, one message per bucket instead of one per array; an array of 1 MiB or
more travels where it lies, without a copy. ``all_reduce(..., async_op=True)`` returns a
:class:`Work` at once; its ``wait()`` finishes the reduction.

After :func:`init_process_group`, an exception that escapes on one rank aborts the whole
job (``MPI_Abort``) instead of leaving the other ranks waiting in a collective forever.
"""

import contextlib
import math
import numbers
import sys
import time
from collections import Counter

import numpy as np

from . import random as _random
from .nn.container import Sequential
from .nn.module import Module, array_module, check_bool, is_array
from .nn.parameter import Parameter

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_backend", "get_rank",
           "get_world_size", "barrier", "broadcast", "all_reduce", "all_gather", "Work",
           "DistributedDataParallel", "DistributedSampler", "BUCKET_CAP_MB"]

BUCKET_CAP_MB = 25  # the default bucket size of all_reduce and DistributedDataParallel
_FIRST_BUCKET_MB = 1  # DDP's first bucket (the last layers' gradients): small, so it starts early
ALONE_BYTES = 1 << 20  # all_reduce and broadcast send arrays this big as they are, unpacked
_REDUCE_DTYPES = tuple(np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64))
_ABORT_GRACE_S = 0.25  # a raising rank's pause before it aborts the job (see _abort_hook)

_group = None  # the process group, once init_process_group has run


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("fastnn.distributed needs mpi4py and an MPI library: "
                          'pip install "fastnn[mpi]" (mpi4py and the mpich wheel), then start the '
                          f"processes with mpiexec ({exc})") from exc
    return MPI


# ------------------------------------------------------------------------- engines


class _MpiRequest:
    """An MPI non-blocking collective: test() moves it on (MPI progresses inside its calls)."""

    def __init__(self, request):
        self.request = request

    def test(self):
        return self.request.Test()

    def wait(self):
        self.request.Wait()


class _Done:
    """A collective that has already finished (a blocking call's)."""

    def test(self):
        return True

    def wait(self):
        pass


class _Mpi:
    """Collectives on NumPy arrays over an MPI communicator (mpi4py)."""

    def __init__(self, comm, MPI):
        self.comm, self.MPI = comm, MPI

    def all_reduce(self, flat, blocking=False):
        # a caller that waits at once gets the blocking call: MPICH's nonblocking
        # all-reduce costs several times more for small messages
        if blocking:
            self.comm.Allreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM)
            return _Done()
        return _MpiRequest(self.comm.Iallreduce(self.MPI.IN_PLACE, flat, op=self.MPI.SUM))

    def broadcast(self, flat, src):
        self.comm.Bcast(flat, root=src)

    def all_gather(self, array, out):
        self.comm.Allgather(array, out)


class _NcclRequest:
    """A NCCL collective queued on the group's stream: done when its event has passed."""

    def __init__(self, event, cupy):
        self.event, self.cupy = event, cupy

    def test(self):
        return self.event.done

    def wait(self):
        # the caller's stream waits for the collective; the host does not
        self.cupy.cuda.get_current_stream().wait_event(self.event)


class _Nccl:
    """Collectives on CuPy arrays over NCCL. Every call is queued on one stream of the
    group, in the order of the calls (NCCL needs one order on every rank), after the work
    already queued on the caller's stream (which made the data)."""

    def __init__(self, cupy, nccl, rank, size, unique_id):
        self.cupy, self.nccl = cupy, nccl
        self.comm = nccl.NcclCommunicator(size, unique_id, rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64,
                      np.dtype(np.int32): nccl.NCCL_INT32, np.dtype(np.int64): nccl.NCCL_INT64,
                      np.dtype(np.uint8): nccl.NCCL_UINT8}

    def _after_caller(self):
        ready = self.cupy.cuda.Event(disable_timing=True)
        ready.record(self.cupy.cuda.get_current_stream())
        self.stream.wait_event(ready)

    def _request(self):
        done = self.cupy.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return _NcclRequest(done, self.cupy)

    def all_reduce(self, flat, blocking=False):  # blocking: the caller waits on its stream anyway
        self._after_caller()
        self.comm.allReduce(flat.data.ptr, flat.data.ptr, flat.size, self.types[flat.dtype],
                            self.nccl.NCCL_SUM, self.stream.ptr)
        return self._request()

    def broadcast(self, flat, src):
        self._after_caller()
        self.comm.bcast(flat.data.ptr, flat.size, self.types[flat.dtype], src, self.stream.ptr)
        self._request().wait()

    def all_gather(self, array, out):
        self._after_caller()
        self.comm.allGather(array.data.ptr, out.data.ptr, array.size, self.types[array.dtype],
                            self.stream.ptr)
        self._request().wait()

    def close(self):
        self.stream.synchronize()
        self.comm.destroy()


def _agree(comm, attempt):
    """Runs attempt() on every rank and returns its result once every rank has succeeded.
    If it raised anywhere, every rank raises a RuntimeError naming the ranks and their
    errors: a failure on one rank never leaves the others waiting in a collective."""
    try:
        result, error = attempt(), None
    except Exception as exc:  # reported to every rank, then raised everywhere
        result, error = None, f"{type(exc).__name__}: {exc}"
    failures = [(rank, err) for rank, err in enumerate(comm.allgather(error)) if err is not None]
    if failures:
        lines = "; ".join(f"rank {rank}: {err}" for rank, err in failures)
        raise RuntimeError(f"fastnn.distributed: setting up failed on {len(failures)} of "
                           f"{comm.Get_size()} ranks ({lines})")
    return result


def _nccl_unique_id(comm, get_unique_id):
    """NCCL's unique id, made on rank 0 and broadcast over MPI to every rank."""
    unique_id = _agree(comm, lambda: get_unique_id() if comm.Get_rank() == 0 else None)
    return comm.bcast(unique_id, root=0)


def _nccl_setup(local_rank):
    """Imports CuPy and NCCL and makes this rank's GPU current (local rank modulo the
    GPUs of the node). Returns (cupy, nccl)."""
    import cupy
    from cupy.cuda import nccl

    devices = cupy.cuda.runtime.getDeviceCount()
    if devices < 1:
        raise RuntimeError("no CUDA device")
    cupy.cuda.Device(local_rank % devices).use()
    return cupy, nccl


# --------------------------------------------------------------------- the group


class _Group:
    def __init__(self, backend, comm, MPI, previous_hook):
        self.backend, self.comm, self.MPI = backend, comm, MPI
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.mpi = _Mpi(comm, MPI)
        self.nccl = None
        self.previous_hook = previous_hook
        self.scratch = _Scratch()

    def engine(self, on_gpu):
        if not on_gpu:
            return self.mpi
        if self.nccl is None:
            raise TypeError("CuPy arrays travel over NCCL: call init_process_group('nccl') "
                            f"(this process group is {self.backend!r})")
        return self.nccl


def init_process_group(backend="mpi", *, abort_on_exception=True):
    """Joins this process to the job that ``mpiexec`` started.

    backend: ``'mpi'`` (NumPy arrays over MPI) or ``'nccl'`` (CuPy arrays over NCCL as
    well: each rank takes the GPU (local rank modulo the node's GPUs), rank 0 makes
    NCCL's unique id and MPI broadcasts it). Collectives run on a duplicate of
    ``MPI.COMM_WORLD``, so they never mix with the program's own MPI messages.

    abort_on_exception: an exception that escapes on any rank aborts every rank
    (``MPI_Abort``, exit status 1) instead of leaving them waiting in a collective.
    """
    global _group
    if not isinstance(backend, str):
        raise TypeError(f"backend must be 'mpi' or 'nccl', got {type(backend).__name__}")
    if backend not in ("mpi", "nccl"):
        raise ValueError(f"backend must be 'mpi' or 'nccl', got {backend!r}")
    check_bool(abort_on_exception, "abort_on_exception")
    if _group is not None:
        raise RuntimeError("init_process_group was already called (destroy_process_group() first)")
    MPI = _import_mpi()
    comm = MPI.COMM_WORLD.Dup()
    group = _Group(backend, comm, MPI, sys.excepthook)
    if backend == "nccl":
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank = local.Get_rank()
        local.Free()
        try:
            cupy, nccl = _agree(comm, lambda: _nccl_setup(local_rank))
            unique_id = _nccl_unique_id(comm, nccl.get_unique_id)
            group.nccl = _Nccl(cupy, nccl, group.rank, group.size, unique_id)
        except BaseException:
            comm.Free()
            raise
    if abort_on_exception:
        sys.excepthook = _abort_hook(group)
    _group = group


def _abort_hook(group):
    previous = group.previous_hook

    def hook(exc_type, exc, tb):
        previous(exc_type, exc, tb)
        sys.stderr.write(f"fastnn.distributed: rank {group.rank} of {group.size} raised "
                         f"{exc_type.__name__}; aborting every rank\n")
        sys.stderr.flush()
        # mpiexec forwards a rank's output from a pipe; an abort right away can end the
        # job before it has read the traceback (seen in about 1 job in 25)
        time.sleep(_ABORT_GRACE_S)
        group.MPI.COMM_WORLD.Abort(1)

    return hook


def destroy_process_group():
    """Leaves the process group (frees its communicators, restores sys.excepthook)."""
    global _group
    group = _require_group()
    if group.nccl is not None:
        group.nccl.close()
    group.comm.Free()
    sys.excepthook = group.previous_hook
    _group = None


def is_initialized():
    return _group is not None


def _require_group():
    if _group is None:
        raise RuntimeError("no process group: call fastnn.distributed.init_process_group() first "
                           "(in every process that mpiexec started)")
    return _group


def get_backend():
    return _require_group().backend


def get_rank():
    """This process's rank, 0 .. world size - 1."""
    return _require_group().rank


def get_world_size():
    """The number of processes in the job."""
    return _require_group().size


def barrier():
    """Returns once every rank has called it (and, with NCCL, this rank's queued
    collectives have finished)."""
    group = _require_group()
    if group.nccl is not None:
        group.nccl.stream.synchronize()
    group.comm.Barrier()


# -------------------------------------------------------------------- collectives


def _array_list(arrays, name):
    """A list of arrays from one array, a Parameter, or a list/tuple of them."""
    if is_array(arrays) or isinstance(arrays, Parameter):
        arrays = [arrays]
    elif not isinstance(arrays, (list, tuple)):
        raise TypeError(f"{name} must be an array or a list of arrays, got {type(arrays).__name__}")
    out = []
    for i, a in enumerate(arrays):
        a = a.data if isinstance(a, Parameter) else a
        if not is_array(a):
            raise TypeError(f"{name}[{i}] must be a NumPy or CuPy array, got {type(a).__name__}")
        out.append(a)
    return out


def _check_arrays(arrays, name, dtypes=None):
    """In-place collectives need C-contiguous, writeable arrays of one library that do not
    overlap; all_reduce also a dtype MPI and NCCL can add. Returns whether they are on the GPU."""
    on_gpu = {not isinstance(a, np.ndarray) for a in arrays}
    if len(on_gpu) > 1:
        raise TypeError(f"{name} mixes NumPy and CuPy arrays; one call takes arrays of one device")
    for i, a in enumerate(arrays):
        if dtypes is not None and a.dtype not in dtypes:
            raise TypeError(f"{name}[{i}] has dtype {a.dtype}; expected one of "
                            + ", ".join(str(d) for d in dtypes))
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}[{i}] must be C-contiguous (the result is written in place)")
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            raise ValueError(f"{name}[{i}] is read-only (the result is written in place)")
    starts = [(_address(a), a.nbytes, i) for i, a in enumerate(arrays) if a.nbytes]
    spans = sorted((start, start + nbytes, i) for start, nbytes, i in starts)
    for (_, end, i), (start, _, j) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(f"{name}[{min(i, j)}] and {name}[{max(i, j)}] overlap in memory")
    return on_gpu == {True}


def _address(a):
    return a.ctypes.data if isinstance(a, np.ndarray) else a.data.ptr


def _check_cap(bucket_cap_mb):
    if isinstance(bucket_cap_mb, bool) or not isinstance(bucket_cap_mb, numbers.Real):
        raise TypeError(f"bucket_cap_mb must be a number, got {type(bucket_cap_mb).__name__}")
    if not bucket_cap_mb > 0:
        raise ValueError(f"bucket_cap_mb must be > 0, got {bucket_cap_mb}")
    return int(bucket_cap_mb * 2**20)


def _buckets(arrays, cap_bytes, first_cap_bytes=None, alone_bytes=None):
    """Lists of indices into arrays: arrays of one dtype, in order, packed up to cap_bytes
    (an array bigger than that alone); the first bucket up to first_cap_bytes. Arrays
    of alone_bytes or more get a bucket each (they travel where they lie: packing them
    would cost two copies to save one message)."""
    by_dtype = {}
    for i, a in enumerate(arrays):
        by_dtype.setdefault(a.dtype, []).append(i)
    buckets = []
    for indices in by_dtype.values():
        current, size = [], 0
        for i in indices:
            if alone_bytes is not None and arrays[i].nbytes >= alone_bytes:
                buckets.append([i])
                continue
            cap = first_cap_bytes if first_cap_bytes and not buckets else cap_bytes
            if current and size + arrays[i].nbytes > cap:
                buckets.append(current)
                current, size = [], 0
            current.append(i)
            size += arrays[i].nbytes
        if current:
            buckets.append(current)
    return buckets


def _flat(group, arrays):
    """One 1-d array holding the arrays one after the other: the array itself (a view)
    when there is only one, else a scratch buffer of the group's (give it back with
    group.scratch.give)."""
    if len(arrays) == 1:
        return arrays[0].reshape(-1)
    flat = group.scratch.take(arrays[0], sum(a.size for a in arrays))
    _pack(arrays, flat)
    return flat


class _Scratch:
    """Flat buffers for packing, kept between calls: a fresh multi-megabyte array costs
    its page faults every time (about as long as copying it). A buffer is busy from
    take() until give(); concurrent calls get different ones."""

    KEEP = 4

    def __init__(self):
        self.free = []  # arrays not in use, smallest first

    def take(self, like, n):
        xp = array_module(like)
        for i, buf in enumerate(self.free):
            if buf.dtype == like.dtype and buf.size >= n and array_module(buf) is xp:
                return self.free.pop(i)[:n]
        return xp.empty(n, like.dtype)

    def give(self, flat):
        base = flat if flat.base is None else flat.base
        self.free.append(base)
        self.free.sort(key=lambda b: b.nbytes)  # take() finds the smallest that fits
        del self.free[:-self.KEEP]  # the biggest few


def _pack(arrays, flat):
    o = 0
    for a in arrays:
        flat[o:o + a.size] = a.reshape(-1)
        o += a.size


def _unpack(flat, arrays, divisor=None):
    """Copies flat back into the arrays (divided by divisor: a mean)."""
    xp = array_module(flat)
    if len(arrays) == 1:  # flat is the array itself (_flat's view)
        if divisor is not None:
            xp.divide(flat, divisor, out=flat)
        return
    o = 0
    for a in arrays:
        part, dest = flat[o:o + a.size], a.reshape(-1)
        if divisor is None:
            dest[...] = part
        else:
            xp.divide(part, divisor, out=dest)
        o += a.size


class Work:
    """A collective started by ``all_reduce(..., async_op=True)``.

    ``wait()`` blocks until it has finished and its results are in the arrays (NCCL:
    until they are queued on the current stream, which waits for them); until then the
    arrays must be neither read nor written. ``is_completed()`` tells without blocking
    whether the results are in the arrays (it puts them there once the messages have
    arrived, and lets MPI move them on: call it while computing something else)."""

    def __init__(self, requests, finish):
        self._requests, self._finish = requests, finish

    def is_completed(self):
        if self._finish is not None and all([r.test() for r in self._requests]):  # test each: progress
            self.wait()
        return self._finish is None

    def wait(self):
        if self._finish is not None:
            for r in self._requests:
                r.wait()
            finish, self._finish = self._finish, None
            finish()


def all_reduce(arrays, op="sum", *, async_op=False, bucket_cap_mb=BUCKET_CAP_MB):
    """Sums (op='sum') or averages (op='mean') each array over the ranks, in place.

    arrays: an array or a list of arrays, NumPy (over MPI) or CuPy (over NCCL), each
    C-contiguous and writeable, float32, float64, int32 or int64 ('mean': floats only).
    Arrays of one dtype are packed, in order, into flat buckets of up to bucket_cap_mb
    MB, one reduction each. async_op=True returns a :class:`Work` without waiting;
    otherwise returns None once the results are in the arrays.
    """
    group = _require_group()
    arrays = _array_list(arrays, "arrays")
    if not isinstance(op, str) or op not in ("sum", "mean"):
        raise ValueError(f"op must be 'sum' or 'mean', got {op!r}")
    check_bool(async_op, "async_op")
    cap = _check_cap(bucket_cap_mb)
    on_gpu = _check_arrays(arrays, "arrays", _REDUCE_DTYPES)
    if op == "mean":
        for i, a in enumerate(arrays):
            if a.dtype.kind != "f":
                raise TypeError(f"op='mean' needs float arrays; arrays[{i}] has dtype {a.dtype}")
    engine = group.engine(on_gpu)
    pending = []
    if group.size > 1:
        for bucket in _buckets(arrays, cap, alone_bytes=ALONE_BYTES):
            members = [arrays[i] for i in bucket]
            flat = _flat(group, members)
            pending.append((engine.all_reduce(flat, blocking=not async_op), flat, members))
    divisor = group.size if op == "mean" and group.size > 1 else None

    def finish():
        for _, flat, members in pending:
            _unpack(flat, members, divisor)
            if len(members) > 1:
                group.scratch.give(flat)

    work = Work([request for request, _, _ in pending], finish)
    if async_op:
        return work
    work.wait()
    return None


def broadcast(arrays, src=0):
    """Copies rank src's arrays into every rank's, in place: an array or a list of
    arrays (any dtype, C-contiguous, writeable), the same shapes and dtypes on every rank."""
    group = _require_group()
    arrays = _array_list(arrays, "arrays")
    src = _check_rank(src, "src", group.size)
    on_gpu = _check_arrays(arrays, "arrays")
    if group.size == 1 or not arrays:
        return
    engine = group.engine(on_gpu)
    as_bytes = [a.reshape(-1).view(np.uint8) for a in arrays]  # one bucket whatever the dtypes
    for bucket in _buckets(as_bytes, BUCKET_CAP_MB * 2**20, alone_bytes=ALONE_BYTES):
        members = [as_bytes[i] for i in bucket]
        flat = _flat(group, members)
        engine.broadcast(flat, src)
        if group.rank != src:
            _unpack(flat, members)
        if len(members) > 1:
            group.scratch.give(flat)


def all_gather(array):
    """Every rank's array, stacked: a new array of shape (world size, *array.shape)."""
    group = _require_group()
    (array,) = _array_list([array], "array")
    on_gpu = _check_arrays([array], "array")
    xp = array_module(array)
    out = xp.empty((group.size,) + array.shape, array.dtype)
    if group.size == 1:
        out[0] = array
    else:
        group.engine(on_gpu).all_gather(array, out)
    return out


def _check_rank(value, name, size):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not 0 <= value < size:
        raise ValueError(f"{name} must be a rank in [0, {size - 1}], got {value}")
    return int(value)


# ------------------------------------------------------------- data-parallel model


class _Bucket:
    def __init__(self, params):
        self.params = params
        xp = array_module(params[0].data)
        self.flat = xp.empty(sum(p.numel() for p in params), params[0].dtype)
        self.views, o = [], 0
        for p in params:
            self.views.append(self.flat[o:o + p.numel()].reshape(p.shape))
            o += p.numel()


class _Reducer:
    """Averages the gradients of a model's parameters over the ranks, bucket by bucket.

    Buckets hold the parameters in reverse registration order (the order a Sequential's
    backward produces their gradients), the first one small. A bucket's reduction starts
    as soon as every layer owning one of its parameters has run its backward, while the
    earlier layers' backwards still run; ``finish()`` starts the rest and waits. After
    it, each parameter's ``.grad`` is a view of its bucket holding the average (the next
    step's gradient is then made there directly, or copied in)."""

    def __init__(self, group, model, cap_bytes):
        self.group, self.model, self.cap_bytes = group, model, cap_bytes
        self.signature = None

    def _build(self, params, signature):
        self.signature = signature
        order = params[::-1]
        first = min(self.cap_bytes, _FIRST_BUCKET_MB * 2**20)
        self.buckets = [_Bucket([order[i] for i in b])
                        for b in _buckets([p.data for p in order], self.cap_bytes, first)]
        self.bucket_of = {id(p): k for k, b in enumerate(self.buckets) for p in b.params}

    def start(self):
        """Before a backward that synchronizes: (re)plans the buckets if the parameters
        changed (frozen, cast), and counts the owners each parameter waits for."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        signature = tuple((id(p), p.shape, p.dtype) for p in params)
        if signature != self.signature:
            self._build(params, signature)
        self.owners_left = Counter(id(p) for m in self.model.modules()
                                   for p in m._parameters.values() if p is not None)
        self.missing = [len(b.params) for b in self.buckets]
        self.next, self.pending = 0, []

    def ran(self, module):
        """module's backward has run: its parameters' gradients are final once every other
        module that owns them has run too. Starts each bucket that is complete, in order."""
        for m in module.modules():
            for p in m._parameters.values():
                if p is None:
                    continue
                self.owners_left[id(p)] -= 1
                k = self.bucket_of.get(id(p))
                if k is not None and self.owners_left[id(p)] == 0:
                    self.missing[k] -= 1
        while self.next < len(self.buckets) and self.missing[self.next] == 0:
            self._launch()
        for work in self.pending:
            work.is_completed()  # MPI moves messages on only inside its calls

    def finish(self):
        while self.next < len(self.buckets):
            self._launch()
        for work in self.pending:
            work.wait()

    def _launch(self):
        bucket = self.buckets[self.next]
        self.next += 1
        for p, view in zip(bucket.params, bucket.views):
            if p.grad is None:  # no gradient on this rank: it adds nothing
                view.fill(0)
            elif p.grad is not view:
                view[...] = p.grad
        engine = self.group.engine(not isinstance(bucket.flat, np.ndarray))
        request = engine.all_reduce(bucket.flat)

        def finish():
            xp = array_module(bucket.flat)
            xp.divide(bucket.flat, self.group.size, out=bucket.flat)
            for p, view in zip(bucket.params, bucket.views):
                p.grad = view

        self.pending.append(Work([request], finish))


class DistributedDataParallel(Module):
    """Data-parallel training of ``module``: every rank runs its own share of each batch
    and the gradients are averaged over the ranks, so every rank takes the same
    optimizer step (as torch's DistributedDataParallel).

    - At construction the parameters and buffers are broadcast from rank 0 (checking
      first that every rank has the same names, shapes and dtypes), so every replica
      starts equal.
    - ``forward`` runs the module; with ``broadcast_buffers=True`` (torch's default) it
      first broadcasts rank 0's buffers (BatchNorm's running statistics; a
      ``SyncBatchNorm`` keeps them equal anyway).
    - ``backward(dy)`` runs the module's backward and averages the gradients of the
      parameters that require them, in buckets of about ``bucket_cap_mb`` MB. In a
      ``Sequential`` (nested ones included) the backward runs layer by layer and each
      bucket is sent as soon as its layers are done, overlapping the rest of the
      backward; other modules send every bucket after their backward. A parameter with
      no gradient on a rank counts as zeros there. Afterwards each ``.grad`` is a view
      of its bucket.
    - ``no_sync()``: a context in which backward only accumulates local gradients
      (gradient accumulation); the first backward outside it averages the sum.
    - Dropout layers (anything with a ``fastnn.random.Generator`` as ``generator``)
      draw from disjoint Philox counter ranges: rank r's generator offset moves on by
      r * 2**64 // world size, so ranks drop different elements, rank 0 the same ones a
      single process would, and a rerun with the same seeds repeats every mask.

    The state dict keys are the module's with ``module.`` in front, as in torch.
    """

    def __init__(self, module, *, broadcast_buffers=True, bucket_cap_mb=BUCKET_CAP_MB):
        group = _require_group()
        if not isinstance(module, Module):
            raise TypeError(f"module must be a fastnn.nn.Module, got {type(module).__name__}")
        check_bool(broadcast_buffers, "broadcast_buffers")
        cap = _check_cap(bucket_cap_mb)
        super().__init__()
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.bucket_cap_mb = bucket_cap_mb
        self._sync = True
        _check_same_model(group, module)
        broadcast([p.data for p in module.parameters()] + list(module.buffers()), src=0)
        _spread_dropout_generators(module, group.rank, group.size)
        self._reducer = _Reducer(group, module, cap)

    def forward(self, *args, **kwargs):
        if self.broadcast_buffers and self.training:
            buffers = list(self.module.buffers())
            if buffers:
                broadcast(buffers, src=0)
        return self.module(*args, **kwargs)

    def backward(self, dy, *, input_grad=True):
        """The module's backward; then (outside no_sync) every gradient is the average
        over the ranks. Returns the module's dx (None with input_grad=False)."""
        if not self._sync or self._reducer.group.size == 1:  # one rank: its gradients are the average
            return self.module.backward(dy, input_grad=input_grad)
        reducer = self._reducer
        reducer.start()
        dx = _backward_in_steps(self.module, dy, input_grad, reducer)
        reducer.finish()
        return dx

    @contextlib.contextmanager
    def no_sync(self):
        """Backwards inside only accumulate this rank's gradients; the next backward
        outside averages the accumulated sum."""
        old, self._sync = self._sync, False
        try:
            yield
        finally:
            self._sync = old

    def extra_repr(self):
        return f"broadcast_buffers={self.broadcast_buffers}, bucket_cap_mb={self.bucket_cap_mb}"


def _backward_in_steps(module, dy, input_grad, reducer):
    """module.backward(dy), a Sequential's layer by layer (as Sequential.backward runs
    them), telling the reducer after each layer."""
    if type(module) is not Sequential:
        dx = module.backward(dy, input_grad=input_grad)
        reducer.ran(module)
        return dx
    ran = module._take_saved(input_grad)
    for m in reversed(ran[1:]):
        dy = _backward_in_steps(m, dy, True, reducer)
    if not ran:
        return dy if input_grad else None
    return _backward_in_steps(ran[0], dy, input_grad, reducer)


def _check_same_model(group, module):
    """Every rank must hold the same parameters and buffers (names, shapes, dtypes):
    otherwise broadcasting them would garble them or hang. ValueError on every rank."""
    layout = [(name, tuple(a.shape), str(a.dtype)) for name, a in module.state_dict().items()]
    layouts = group.comm.allgather(layout)
    for rank, other in enumerate(layouts):
        if other != layouts[0]:
            diff = next((a, b) for a, b in zip(layouts[0] + [None], other + [None]) if a != b)
            raise ValueError(f"DistributedDataParallel: rank {rank}'s model differs from rank 0's "
                             f"(rank 0: {diff[0]}, rank {rank}: {diff[1]})")


def _spread_dropout_generators(module, rank, size):
    """Rank r's Philox offsets start r * 2**64 // size further on: disjoint counter ranges."""
    span = 2**64 // size
    for m in module.modules():
        generator = getattr(m, "generator", None)
        if isinstance(generator, _random.Generator) and rank:
            seed, offset = generator.get_state()
            if offset + rank * span > 2**64 - 1:
                raise ValueError(f"{type(m).__name__}'s generator offset {offset} leaves no room "
                                 f"for {size} ranks; reseed it")
            generator.set_state((seed, offset + rank * span))


# ------------------------------------------------------------------------ sampler


class DistributedSampler:
    """This rank's share of a dataset's indices, as torch's DistributedSampler.

    dataset: its length (an int) or anything with ``len()``. Every epoch the indices
    0 .. n-1 are shuffled (shuffle=True) with a generator seeded by (seed, epoch), the
    same on every rank, and rank r takes every num_replicas-th from position r: the
    shares are disjoint. So that every rank runs the same number of steps, the list is
    padded with its own first indices up to a multiple of num_replicas (a few samples
    are seen twice per epoch), or with drop_last=True cut down to one (a few are left
    out). Call ``set_epoch(epoch)`` before each epoch for a fresh order.
    ``indices()`` gives the share as an int64 array (``x[sampler.indices()]``);
    iterating gives the same indices as ints.
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if isinstance(dataset, numbers.Integral) and not isinstance(dataset, bool):
            n = int(dataset)
        elif hasattr(dataset, "__len__"):
            n = len(dataset)
        else:
            raise TypeError(f"dataset must be a length (int) or have len(), got {type(dataset).__name__}")
        if n < 0:
            raise ValueError(f"dataset length must be >= 0, got {n}")
        if num_replicas is None:
            num_replicas = get_world_size()
        if isinstance(num_replicas, bool) or not isinstance(num_replicas, numbers.Integral):
            raise TypeError(f"num_replicas must be an int, got {type(num_replicas).__name__}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        self.num_replicas = int(num_replicas)
        self.rank = _check_rank(get_rank() if rank is None else rank, "rank", self.num_replicas)
        self.shuffle = check_bool(shuffle, "shuffle")
        self.seed = _random.check_u64(seed, "seed")
        self.drop_last = check_bool(drop_last, "drop_last")
        self.n = n
        if drop_last:
            self.num_samples = n // self.num_replicas
        else:
            self.num_samples = math.ceil(n / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0

    def set_epoch(self, epoch):
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral):
            raise TypeError(f"epoch must be an int, got {type(epoch).__name__}")
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch (int64, num_samples of them)."""
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size > self.n:  # pad with the first indices (again if n is small)
            order = np.resize(order, self.total_size) if self.n else order
        return order[self.rank:self.total_size:self.num_replicas].astype(np.int64)

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples
