"""The benchmark cases, one module per kernel family.

A family module has ``cases()``: its Cases (fastnn.bench.registry) without a size;
each Case's ``make(n, torch)`` builds the arrays and implementations at n elements.
To add a family, write its module here and add its name to FAMILIES: ``fastnn
bench``, its ``--ops`` filter, the JSON and the pytest-benchmark suite in bench/
pick it up from there.
"""

import importlib

# In the order the table lists them.
FAMILIES = (
    "batch_norm",
    "activations",    # and softmax cross-entropy
    "prelu_maxout",
    "dropout",
    "optim",
    "threads",        # a NumPy matmul alternating with a kernel
    "training",       # a whole step of three models, at their own sizes
    "allreduce",      # all-reduce and data-parallel steps on 2 ranks (an MPI job)
)


def modules():
    return [importlib.import_module(f"{__name__}.{name}") for name in FAMILIES]
