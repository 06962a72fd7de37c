"""``fastnn info | demo | bench`` (also ``python -m fastnn ...``)."""

import argparse
import sys

import fastnn
import fastnn.bench
import fastnn.demo


def _backend_text(name, info):
    if name != "cuda":
        return name
    devices = info["cuda_devices"]
    return f"cuda ({devices} device{'s' if devices > 1 else ''})" if devices else "cuda (built, no device)"


def _blas_text(lib):
    layer = f", {lib['threading_layer']}" if lib["threading_layer"] else ""
    return f"{lib['library']} {lib['version'] or ''} ({lib['threads']} threads{layer})"


def _print_info():
    info = fastnn.info()
    shown = dict(info, backends=[_backend_text(b, info) for b in info["backends"]],
                 blas=[_blas_text(lib) for lib in info["blas"]])
    width = max(len(k) for k in shown)
    for key, value in shown.items():
        if isinstance(value, list):
            value = ", ".join(value) or "-"
        print(f"{key:<{width}}  {value}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build: version, backends, SIMD level, threads, NumPy's BLAS")
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
