"""``fastnn bench --device cuda``: the CUDA kernels against the same formulas written
with CuPy (what a user would write), against PyTorch's CUDA ops where torch sees a GPU,
and against the device's memory floor, all measured in the same run.

Each case is timed with CUDA events on CuPy's current stream: one warm-up call of each
implementation, then rounds in which each runs once; the figure is the median. The
floor is a copy-like pass (``_cuda.stream_pass``) reading and writing as many float32
arrays of the case's size as the kernel must; the header also gives the plain device
copy's bandwidth (``cudaMemcpyAsync``) at the largest size.
"""

import fnmatch
import json
import statistics

import fastnn
from . import registry

F = fastnn.functional.raw


def _time(cp, fn, rounds):
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(rounds):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop))
    return statistics.median(times)


def _floor(cuda, cp, n, reads, writes, inplace=0):
    arrays = [cp.ones(n, cp.float32) for _ in range(reads + writes + inplace)]
    r, w, k = arrays[:reads], arrays[reads:reads + writes], arrays[reads + writes:]
    return (lambda: cuda.stream_pass(r, w, k)), 4 * n * (reads + writes + 2 * inplace)


def _cases(cp, torch, n):
    """(op, layout, {impl: fn}, (reads, writes, inplace) of the floor) at n elements."""
    rng = cp.random.default_rng(0)
    x = rng.standard_normal(n, dtype=cp.float32)
    dy = rng.standard_normal(n, dtype=cp.float32)
    tx = torch.as_tensor(x, device="cuda") if torch else None
    tdy = torch.as_tensor(dy, device="cuda") if torch else None
    import cupyx.scipy.special as special

    def with_torch(impls, fn):
        if torch:
            impls["torch"] = fn
        return impls

    yield "relu", "flat", with_torch({"fastnn": lambda: F.relu(x), "cupy": lambda: cp.maximum(x, 0)},
                                     lambda: torch.relu(tx)), (1, 1, 0)
    yield "gelu", "flat", with_torch({"fastnn": lambda: F.gelu(x),
                                      "cupy": lambda: 0.5 * x * (1 + special.erf(x * 0.7071067811865476))},
                                     lambda: torch.nn.functional.gelu(tx)), (1, 1, 0)
    yield "gelu backward", "flat", with_torch(
        {"fastnn": lambda: F.gelu_backward(dy, x),
         "cupy": lambda: dy * (0.5 * (1 + special.erf(x * 0.7071067811865476))
                               + x * cp.exp(-0.5 * x * x) * 0.3989422804014327)},
        lambda: torch.ops.aten.gelu_backward(tdy, tx)), (2, 1, 0)
    yield "silu", "flat", with_torch({"fastnn": lambda: F.silu(x), "cupy": lambda: x / (1 + cp.exp(-x))},
                                     lambda: torch.nn.functional.silu(tx)), (1, 1, 0)
    yield "dropout", "flat", with_torch(
        {"fastnn": lambda: F.dropout(x, 0.1, seed=1),
         "cupy": lambda: x * (cp.random.random(n, dtype=cp.float32) >= 0.1) / 0.9},
        lambda: torch.nn.functional.dropout(tx, 0.1)), (1, 1, 0)
    c, hw = registry.C, registry.HW
    batch = max(1, n // (c * hw * hw))
    img = rng.standard_normal((batch, c, hw, hw), dtype=cp.float32)
    dimg = rng.standard_normal(img.shape, dtype=cp.float32)
    w, b = cp.ones(c, cp.float32), cp.zeros(c, cp.float32)
    rm, rv = cp.zeros(c, cp.float32), cp.ones(c, cp.float32)
    m = img.size // c

    def cupy_bn():
        mean = img.mean(axis=(0, 2, 3), keepdims=True)
        var = img.var(axis=(0, 2, 3), keepdims=True)
        return (img - mean) / cp.sqrt(var + 1e-5) * w[:, None, None] + b[:, None, None]
    fwd = F.batch_norm_forward(img, w, b, None, None)

    def cupy_bn_backward():
        xhat = (img - fwd.mean[:, None, None]) * fwd.invstd[:, None, None]
        db = dimg.sum(axis=(0, 2, 3), keepdims=True)
        dw = (dimg * xhat).sum(axis=(0, 2, 3), keepdims=True)
        return w[:, None, None] * fwd.invstd[:, None, None] / m * (m * dimg - db - xhat * dw)
    impls = {"fastnn": lambda: F.batch_norm_forward(img, w, b, rm, rv), "cupy": cupy_bn}
    bwd = {"fastnn": lambda: F.batch_norm_backward(dimg, img, w, fwd.mean, fwd.invstd), "cupy": cupy_bn_backward}
    if torch:
        timg, tw, tb = (torch.as_tensor(a, device="cuda") for a in (img, w, b))
        trm, trv = torch.zeros(c, device="cuda"), torch.ones(c, device="cuda")
        impls["torch"] = lambda: torch.nn.functional.batch_norm(timg, trm, trv, tw, tb, training=True)
        tdimg = torch.as_tensor(dimg, device="cuda")
        tsave = torch.as_tensor(fwd.mean, device="cuda"), torch.as_tensor(fwd.invstd, device="cuda")
        bwd["torch"] = lambda: torch.ops.aten.native_batch_norm_backward(
            tdimg, timg, tw, None, None, tsave[0], tsave[1], True, 1e-5, [True, True, True])
    yield "batch_norm", "NCHW", impls, (2, 1, 0)
    yield "batch_norm backward", "NCHW", bwd, (3, 1, 0)
    nhwc = cp.ascontiguousarray(img.transpose(0, 2, 3, 1))
    yield "batch_norm", "NHWC", {"fastnn": lambda: F.batch_norm_forward(nhwc, w, b, rm, rv, channel_axis=-1),
                                 "cupy": lambda: (nhwc - nhwc.mean(axis=(0, 1, 2))) / cp.sqrt(
                                     nhwc.var(axis=(0, 1, 2)) + 1e-5) * w + b}, (2, 1, 0)
    # Adam over 200 tensors of n / 200 elements (one multi-tensor step)
    sizes = [max(1, n // 200)] * 200
    params = [fastnn.nn.Parameter(rng.standard_normal(s, dtype=cp.float32)) for s in sizes]
    for p in params:
        p.grad = rng.standard_normal(p.shape, dtype=cp.float32)
    opt = fastnn.optim.Adam(params, lr=1e-3)
    ms = [cp.zeros_like(p.data) for p in params]
    vs = [cp.zeros_like(p.data) for p in params]

    def cupy_adam():
        for p, mm, vv in zip(params, ms, vs):
            g = p.grad
            mm *= 0.9
            mm += 0.1 * g
            vv *= 0.999
            vv += 0.001 * g * g
            p.data -= 1e-3 * mm / (cp.sqrt(vv) + 1e-8)
    impls = {"fastnn": opt.step, "cupy": cupy_adam}
    if torch:
        tparams = [torch.zeros(s, device="cuda", requires_grad=True) for s in sizes]
        for t in tparams:
            t.grad = torch.randn(t.shape, device="cuda")
        topt = torch.optim.Adam(tparams, lr=1e-3, fused=True)
        impls["torch"] = topt.step
    yield "adam step", "200 tensors", impls, (1, 0, 3)


def run(args, sizes):
    """The GPU benchmark; returns the exit code."""
    try:
        import cupy as cp
    except ImportError:
        print("fastnn bench --device cuda needs CuPy (pip install cupy-cuda13x)")
        return 2
    try:
        cuda = fastnn._backend.cuda_module()
    except RuntimeError as exc:
        print(f"fastnn bench --device cuda: {exc}")
        return 2
    if cuda.device_count() == 0:
        print("fastnn bench --device cuda: no CUDA device")
        return 2
    try:
        import torch
        torch = torch if torch.cuda.is_available() else None
    except ImportError:
        torch = None
    rounds = 3 if args.quick else 15
    big = max(sizes)
    src, dst = cp.ones(big, cp.float32), cp.empty(big, cp.float32)
    copy_ms = _time(cp, lambda: cuda.stream_copy(src, dst), rounds)
    copy_gbs = 2 * src.nbytes / (copy_ms * 1e-3) / 1e9
    del src, dst
    info = fastnn.info()
    print(f"{info['gpus'][0] if info['gpus'] else 'GPU'}; CUDA {info['cuda_runtime']}; CuPy {cp.__version__}; "
          f"PyTorch {torch.__version__ if torch else 'not used'}; device copy {copy_gbs:.0f} GB/s "
          f"({registry.size_label(big)} float32)\n")
    print("| op | layout | size | fastnn ms | CuPy ms | PyTorch ms | floor ms | vs CuPy | vs PyTorch | / floor | GB/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    patterns = [p.strip() for p in args.ops.split(",")] if args.ops else None
    for n in sizes:
        for op, layout, impls, (r, w, k) in _cases(cp, torch, n):
            if patterns and not any(fnmatch.fnmatch(op, p) or op.startswith(p) for p in patterns):
                continue
            floor, nbytes = _floor(cuda, cp, n, r, w, k)
            impls = dict(impls, floor=floor)
            for fn in impls.values():
                fn()
            ms = {name: _time(cp, fn, rounds) for name, fn in impls.items()}
            fast = ms["fastnn"]
            row = {"op": op, "layout": layout, "size": registry.size_label(n), "elements": n, "ms": ms,
                   "vs_cupy": ms["cupy"] / fast, "vs_torch": ms["torch"] / fast if "torch" in ms else None,
                   "vs_floor": fast / ms["floor"], "gb_per_s": nbytes / (fast * 1e-3) / 1e9}
            rows.append(row)
            t = f"{ms['torch']:.3f}" if "torch" in ms else "-"
            vt = f"{row['vs_torch']:.2f}x" if row["vs_torch"] else "-"
            print(f"| {op} | {layout} | {row['size']} | {fast:.3f} | {ms['cupy']:.3f} | {t} | {ms['floor']:.3f} "
                  f"| {row['vs_cupy']:.1f}x | {vt} | {row['vs_floor']:.2f} | {row['gb_per_s']:.0f} |", flush=True)
            del impls
            cp.get_default_memory_pool().free_all_blocks()
    print(f"\nMedian of {rounds} rounds (CUDA events) after a warm-up call; the floor reads and writes "
          "as many float32 arrays of the case's size as the kernel must.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": info["gpus"], "copy_gb_per_s": copy_gbs, "cases": rows}, f, indent=1)
    return 0

