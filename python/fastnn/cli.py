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
    bench = sub.add_parser("bench", help="time every kernel against NumPy, PyTorch and the memory floor")
    fastnn.bench.add_arguments(bench)
    args = parser.parse_args(argv)
    if args.command == "info":
        _print_info()
        return 0
    if args.command == "bench":
        return fastnn.bench.main(args)
    return fastnn.demo.main(args)


if __name__ == "__main__":
    sys.exit(main())
