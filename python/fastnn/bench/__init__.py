"""``fastnn bench``: fastnn against NumPy, PyTorch CPU and the memory floor.

The cases live in ``families`` (one module per kernel family) over the framework in
``registry``, also used by the pytest-benchmark suite in bench/; ``runner`` times them
and writes the table, the JSON and the plot.
"""

import os
import sys

import fastnn
from . import registry, runner

# Elements of each case's main array: 4 MB of float32 (inside the last-level cache)
# and 256 MB (far beyond it: each case then moves 0.5 to 2 GB). Cases made with a size
# of their own (a loop, a model's parameter list or batch) run once at it.
DEFAULT_SIZES = ["1M", "64M"]
QUICK_SIZES = ["64K"]
ROUNDS, BUDGET_S = 7, 2.0
QUICK_ROUNDS, QUICK_BUDGET_S = 3, 0.05


def add_arguments(parser):
    parser.add_argument("--quick", action="store_true",
                        help=f"every family at {','.join(QUICK_SIZES)} elements, {QUICK_ROUNDS} "
                             "rounds (a smoke run, well under a minute)")
    parser.add_argument("--ops", metavar="PATTERN,...",
                        help="only the cases whose family, op name, op or layout matches one of "
                             "these fnmatch patterns (e.g. 'gelu*,batch_norm,optim,NHWC')")
    parser.add_argument("--sizes", metavar="SIZE,...",
                        help=f"elements of each case's main array (default {','.join(DEFAULT_SIZES)})")
    parser.add_argument("--threads", type=int, help="threads for fastnn and PyTorch (default: all cores)")
    parser.add_argument("--json", metavar="PATH", help="also write the results and the machine as JSON")
    parser.add_argument("--plot", metavar="PATH", help="also draw the speed-ups as a PNG (needs matplotlib)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cuda: the CUDA kernels against CuPy, PyTorch CUDA and the device's memory "
                             "floor (needs CuPy and a GPU; --sizes, --ops, --quick and --json apply)")


def main(args):
    """Runs the cases args select; returns the exit code."""
    try:
        sizes = [registry.parse_size(s) for s in
                 (args.sizes.split(",") if args.sizes else QUICK_SIZES if args.quick else DEFAULT_SIZES)]
        cases = registry.cases(sizes)
        if args.ops:
            cases = registry.select(cases, [p.strip() for p in args.ops.split(",") if p.strip()])
        elif args.quick:
            cases = [c for c in cases if c.in_process]  # an MPI job's cases take longer
        if args.threads is not None:
            fastnn.set_num_threads(args.threads)
        if args.plot:
            import matplotlib  # noqa: F401  (fail before the run, not after)
    except ImportError:
        print("fastnn bench: --plot needs matplotlib (pip install matplotlib, or the "
              "'bench' extra: pip install \"fastnn[bench]\")", file=sys.stderr)
        return 2
    except (TypeError, ValueError) as exc:
        print(f"fastnn bench: {exc}", file=sys.stderr)
        return 2
    if args.device == "cuda":
        from . import gpu

        return gpu.run(args, sizes)
    threads = fastnn.get_num_threads()
    torch = runner.import_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    rounds, budget = (QUICK_ROUNDS, QUICK_BUDGET_S) if args.quick else (ROUNDS, BUDGET_S)
    m = runner.machine(torch, threads)
    for path in (args.json, args.plot):
        if path and os.path.dirname(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
    rows = runner.run(cases, rounds=rounds, budget_s=budget, torch=torch)
    print(runner.table(rows, m, rounds, budget))
    if args.json:
        runner.write_json(args.json, rows, m, {"rounds": rounds, "budget_s": budget,
                                               "sizes": [registry.size_label(n) for n in sizes]})
    if args.plot:
        runner.plot(args.plot, rows, m)
    return 0


def pytest_params(*families):
    """pytest parameters (case, implementation) of the families (default: all), for
    bench/; sizes from the environment variable BENCH_SIZES (default: DEFAULT_SIZES)."""
    import os

    import pytest

    sizes = os.environ.get("BENCH_SIZES", ",".join(DEFAULT_SIZES)).split(",")
    return [pytest.param(case, impl, id=f"{case.name.replace(' ', '-')}-{impl}")
            for case in registry.cases([registry.parse_size(s) for s in sizes])
            if case.in_process and (not families or case.family in families)
            for impl in case.impl_names(with_torch=True)]
