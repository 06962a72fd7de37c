"""``fastnn info | demo | bench`` (also ``python -m fastnn ...``)."""

import argparse
import sys

import fastnn
import fastnn.bench
import fastnn.demo


def _print_info():
    info = fastnn.info()
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{key:<{width}}  {value}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build: version, backends, SIMD level, threads")
    demo = sub.add_parser("demo", help="train a CNN and an MLP on handwritten digits (the main job; "
                          "needs the examples extra)")
    fastnn.demo.add_arguments(demo)
    demo.add_argument("--distributed", action="store_true",
                      help="instead, train the digits MLP data-parallel (start it with "
                           "mpiexec -n 2); print the accuracy and samples/s of 1 and 2 ranks "
                           "(--epochs: 20 by default)")
    bench = sub.add_parser("bench", help="time every kernel against NumPy, PyTorch and the memory floor")
    fastnn.bench.add_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "info":
        _print_info()
        return 0
    if args.command == "bench":
        return fastnn.bench.main(args)
    if args.distributed:
        from . import _distributed_demo

        epochs = _distributed_demo.EPOCHS if args.epochs is None else args.epochs
        if epochs < 1:
            parser.error(f"--epochs must be >= 1, got {epochs}")
        _distributed_demo.main(epochs=epochs)
        return 0
    return fastnn.demo.main(args)


if __name__ == "__main__":
    sys.exit(main())
