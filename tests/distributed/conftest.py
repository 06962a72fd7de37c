"""Tests that run inside an MPI job: ``mpiexec -n 2 python -m pytest tests/distributed``.

tests/test_distributed.py launches them with 2 and 4 ranks. Run by plain pytest
(no mpiexec around it) they are not collected. Every rank runs every test; a test's
collectives pair up across ranks because every rank runs the same tests in the same
order. If a rank fails before a collective the others would wait in it forever, so
every test runs under a watchdog that ends the process (and with it the MPI job)
after TIMEOUT_S.
"""

import faulthandler
import os

import pytest

TIMEOUT_S = 60

_UNDER_MPIEXEC = any(int(os.environ.get(k, "1")) > 1 for k in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE"))
if not _UNDER_MPIEXEC:
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def process_group():
    import fastnn.distributed as dist

    dist.init_process_group("mpi")
    yield
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


@pytest.fixture(autouse=True)
def _watchdog():
    """A test that outlives TIMEOUT_S (a collective waiting for a rank that failed)
    prints every thread's stack and exits the process with status 1: mpiexec then ends
    the other ranks."""
    faulthandler.dump_traceback_later(TIMEOUT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def rank():
    import fastnn.distributed as dist

    return dist.get_rank()


@pytest.fixture
def world():
    import fastnn.distributed as dist

    return dist.get_world_size()
