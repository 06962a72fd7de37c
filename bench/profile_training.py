"""Where the time of a training step goes: the training family's models (fastnn.bench),
one thread everywhere, each step split into

  matmul         numpy.matmul: the Linear and Conv2d products (BLAS)
  fastnn         fastnn's native kernels: batch norm (+ fused ReLU), ReLU, dropout,
                 softmax cross-entropy, the AdamW update, and the window kernels of
                 Conv2d and the pooling layers (im2col, col2im, the output's transpose
                 with the bias and its backward, max and average pooling)
  other NumPy    the NumPy calls left in the layers (allocations, reshapes, small sums)
  Python         the rest: the interpreter running the layers, checks and bookkeeping

The three native groups are timed by wrapping those functions (every public function of
fastnn._cpu, whatever its family, and the NumPy calls below; the layers look them up at
each call; one group at a time, less the wrapper's own measured cost per call);
Python is what the same steps take unwrapped minus their sum. Times are
CPU time (time.process_time), the least of 5 runs of 20 steps: with one thread they
count the work, not the waits of a machine shared with other jobs.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python bench/profile_training.py
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # NumPy's BLAS threads: before numpy loads
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import contextlib  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import fastnn  # noqa: E402
from fastnn.bench.families import training  # noqa: E402

NUMPY_CALLS = ("add", "subtract", "multiply", "divide", "maximum", "greater", "isnan", "copyto", "zeros",
               "empty", "full", "array", "ascontiguousarray", "sum", "where", "exp", "log", "log1p", "abs")
STEPS, REPEATS = 20, 5


class Timed:
    """Stands in for a function or ufunc (attributes such as ufunc.reduce pass through);
    adds the seconds of each outermost timed call to totals[group]."""

    depth = 0  # timed calls in progress: a timed call inside another is not counted twice
    calls = 0  # outermost timed calls made

    def __init__(self, fn, totals, group):
        self.fn, self.totals, self.group = fn, totals, group

    def __getattr__(self, name):
        return getattr(self.fn, name)

    def __call__(self, *args, **kwargs):
        if Timed.depth:
            return self.fn(*args, **kwargs)
        Timed.depth += 1
        Timed.calls += 1
        t0 = time.process_time()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.totals[self.group] += time.process_time() - t0
            Timed.depth -= 1


@contextlib.contextmanager
def timed(module, names, totals, group):
    """module.<name> timed into totals[group] for each name, restored on exit."""
    originals = {name: getattr(module, name) for name in names}
    for name, fn in originals.items():
        setattr(module, name, Timed(fn, totals, group))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(module, name, fn)


def run(step, steps):
    t0 = time.process_time()
    for _ in range(steps):
        step()
    return (time.process_time() - t0) / steps


def wrapper_cost():
    """Seconds a Timed wrapper adds to each call (its clock reads), counted in its group."""
    totals, n, args = {"x": 0.0}, 20000, (1, 2)
    wrapped = Timed(max, totals, "x")
    t0 = time.process_time()
    for _ in range(n):
        max(*args)
    bare = time.process_time() - t0
    t0 = time.process_time()
    for _ in range(n):
        wrapped(*args)
    return max(0.0, totals["x"] - bare) / n


def profile(model):
    step = training.build(model, None).impls["fastnn"]
    run(step, 5)  # warm-up
    total = min(run(step, STEPS) for _ in range(REPEATS))
    kernels = [n for n in dir(fastnn._cpu) if not n.startswith("_") and callable(getattr(fastnn._cpu, n))]
    cost = wrapper_cost()
    runs = []
    for _ in range(REPEATS):
        totals = dict.fromkeys(("matmul", "fastnn", "other NumPy"), 0.0)
        counts = {}
        for group, module, names in (("matmul", np, ["matmul"]), ("fastnn", fastnn._cpu, kernels),
                                     ("other NumPy", np, NUMPY_CALLS)):
            Timed.calls = 0
            with timed(module, names, totals, group):
                wrapped = run(step, STEPS)
            counts[group] = Timed.calls
        runs.append((wrapped, {k: max(0.0, v - counts[k] * cost) / STEPS for k, v in totals.items()}))
    parts = min(runs, key=lambda r: r[0])[1]  # the least disturbed run
    parts["Python"] = max(0.0, total - sum(parts.values()))
    return total, parts


def main():
    fastnn.set_num_threads(1)
    print("| model | step ms | matmul | fastnn kernels | other NumPy | Python |")
    print("|---|---:|---:|---:|---:|---:|")
    for model in training.MODELS:
        total, parts = profile(model)
        cells = " | ".join(f"{parts[k] * 1e3:.2f} ms ({parts[k] / total:.0%})"
                           for k in ("matmul", "fastnn", "other NumPy", "Python"))
        print(f"| {model} | {total * 1e3:.2f} | {cells} |")


if __name__ == "__main__":
    main()
