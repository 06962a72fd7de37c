"""``fastnn info | demo | bench`` (also ``python -m fastnn ...``)."""

import argparse
import sys
import time

import numpy as np

import fastnn
import fastnn.bench


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


def _bn_reference(x, weight, bias, eps):
    """float64 batch norm over (N, C, H, W): y, and a function giving the gradients."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3), keepdims=True)
    invstd = 1 / np.sqrt(x64.var(axis=(0, 2, 3), keepdims=True) + eps)
    xhat = (x64 - mean) * invstd
    y = xhat * weight[:, None, None] + bias[:, None, None]

    def backward(dy):
        dy = dy.astype(np.float64)
        m = x.size // x.shape[1]
        dbias = dy.sum(axis=(0, 2, 3), keepdims=True)
        dweight = (dy * xhat).sum(axis=(0, 2, 3), keepdims=True)
        return weight[:, None, None] * invstd / m * (m * dy - dbias - xhat * dweight)

    return y, backward


def _timed(fn, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def _max_rel_error(actual, reference):
    return float(np.max(np.abs(actual - reference)) / np.max(np.abs(reference)))


def _demo():
    _print_info()
    rng = np.random.default_rng(0)
    shape = (64, 64, 56, 56)
    c = shape[1]
    print(f"\nBatch norm in training, x {shape} float32 (NCHW), {fastnn.get_num_threads()} threads; "
          "time is the best of 3 (NumPy: of 2):")
    x = rng.standard_normal(shape, dtype=np.float32) * 3 + 2
    dy = rng.standard_normal(shape, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, c).astype(np.float32)
    b = rng.standard_normal(c).astype(np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    wb, bb = w[:, None, None], b[:, None, None]

    fwd, t_fwd = _timed(lambda: fastnn.F.batch_norm_forward(x, w, b, rm, rv, training=True))
    (dx, _, _), t_bwd = _timed(lambda: fastnn.F.batch_norm_backward(dy, x, w, fwd.mean, fwd.invstd))

    def numpy_forward():
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        var = x.var(axis=(0, 2, 3), keepdims=True)
        return (x - mean) / np.sqrt(var + 1e-5) * wb + bb

    def numpy_backward():
        m = x.size // c
        invstd = fwd.invstd[:, None, None]
        xhat = (x - fwd.mean[:, None, None]) * invstd
        dbias = dy.sum(axis=(0, 2, 3), keepdims=True)
        dweight = (dy * xhat).sum(axis=(0, 2, 3), keepdims=True)
        return wb * invstd / m * (m * dy - dbias - xhat * dweight)

    _, t_np_fwd = _timed(numpy_forward, repeat=2)
    _, t_np_bwd = _timed(numpy_backward, repeat=2)
    y_ref, backward_ref = _bn_reference(x, w, b, 1e-5)
    for name, t, t_np, err in (
        ("forward ", t_fwd, t_np_fwd, _max_rel_error(fwd.y, y_ref)),
        ("backward", t_bwd, t_np_bwd, _max_rel_error(dx, backward_ref(dy))),
    ):
        print(f"  {name} fastnn {t * 1e3:7.1f} ms   NumPy {t_np * 1e3:7.1f} ms   "
              f"({t_np / t:4.1f}x faster)   max error vs float64 {err:.1e}")

    print("\nA channel with mean 1e4 and std 1e-2 (float32), max relative error of y vs float64:")
    x = (1e4 + 1e-2 * rng.standard_normal((16, 4, 32, 32))).astype(np.float32)
    ones, zeros = np.ones(4, np.float32), np.zeros(4, np.float32)
    ref, _ = _bn_reference(x, ones, zeros, 1e-5)
    y = fastnn.F.batch_norm_forward(x, None, None, None, None).y
    mean = x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float32)
    invstd = 1 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True, dtype=np.float32) + 1e-5)
    folded = x * invstd - mean * invstd  # the folded x * s + shift form, in float32
    big = np.abs(ref) > 0.1
    for name, out in (("fastnn", y), ("folded float32", folded)):
        rel = np.max(np.abs(out - ref)[big] / np.abs(ref)[big])
        print(f"  {name:<15} {rel:.1e}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastnn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="print the build: version, backends, SIMD level, threads, NumPy's BLAS")
    demo = sub.add_parser("demo", help="run batch norm on a real-sized batch and check it")
    demo.add_argument("--distributed", action="store_true",
                      help="train the digits classifier data-parallel (start it with "
                           "mpiexec -n 2); print the accuracy and samples/s of 1 and 2 ranks")
    demo.add_argument("--epochs", type=int, default=20, help="epochs of the --distributed training")
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

        if args.epochs < 1:
            parser.error(f"--epochs must be >= 1, got {args.epochs}")
        _distributed_demo.main(epochs=args.epochs)
        return 0
    return _demo()


if __name__ == "__main__":
    sys.exit(main())
