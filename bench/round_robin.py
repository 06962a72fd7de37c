"""The 64M-element figures in the README, timed round-robin.

Each round runs every implementation of a case once (fastnn default and out=, NumPy,
PyTorch, the memory floor), so a drift in this VM's memory bandwidth hits them all
alike; the figure is the median over 7 rounds (NumPy, which takes seconds: one run).
The calls are the pytest-benchmark suites' own (bench/test_*.py).

    python bench/round_robin.py act|chan|dropout|optim|bnrelu     (needs torch)
"""
import gc
import importlib.util
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

import fastnn

HERE = pathlib.Path(__file__).parent
THREADS = int(os.environ.get("BENCH_THREADS", os.cpu_count() or 1))
fastnn.set_num_threads(THREADS)
torch.set_num_threads(THREADS)

def load(name):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); return m

def rr(fns, rounds, slow=("numpy",)):
    t = {k: [] for k in fns}
    for k, f in fns.items(): f()  # warm-up (slow ones too: first call page faults)
    for r in range(rounds):
        for k, f in fns.items():
            if k in slow and r > 0: continue
            s = time.perf_counter(); f(); t[k].append(time.perf_counter() - s)
    return {k: statistics.median(v) * 1e3 for k, v in t.items()}

def row(name, m, torch_key="torch"):
    fn, fo, fl, npy, tt = m.get("fastnn"), m.get("fastnn_out"), m.get("floor"), m.get("numpy"), m.get(torch_key)
    cells = [name] + [f"{m[k]:.1f}" if k in m else "" for k in ("fastnn", "fastnn_out", "numpy", torch_key, "floor")]
    cells += [f"{npy / fn:.1f}x" if npy else "", f"{tt / fn:.2f}x" if tt else "", f"{(fo or fn) / fl:.2f}" if fl else ""]
    print("| " + " | ".join(cells) + " |", flush=True)

HDR = "| case | fastnn ms | out= ms | NumPy ms | PyTorch ms | floor ms | vs NumPy | vs PyTorch | out= / floor |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
which = sys.argv[1]
R = 7
if which == "act":
    A = load("test_activations")
    x, dy, out = A.arrays("64M")
    print(HDR)
    for name, (fwd, bwd, params) in A.OPS.items():
        for d in ("forward", "backward"):
            fns = {}
            if d == "forward":
                fns["fastnn"] = lambda: fwd(x, *params); fns["fastnn_out"] = lambda: fwd(x, *params, out=out)
                fns["floor"] = lambda: fastnn._cpu.stream_copy(x, out)
            else:
                fns["fastnn"] = lambda: bwd(dy, x, *params); fns["fastnn_out"] = lambda: bwd(dy, x, *params, out=out)
                fns["floor"] = lambda: fastnn._cpu.stream_add(dy, x, out)
            fns["torch"] = A.torch_call(name, d, x, dy); fns["numpy"] = A.numpy_call(name, d, x, dy)
            row(f"{name} {d} 64M", rr(fns, R)); gc.collect()
elif which == "dropout":
    D = load("test_dropout")
    print(HDR)
    for n in (1 << 24, 1 << 26):
        c = D.Case(n)
        for op in ("forward", "backward"):
            impls = ["fastnn", "fastnn_out", "numpy", "torch", "floor"] + (["fastnn_regen"] if op == "backward" else [])
            m = rr({k: D.call(c, op, k) for k in impls}, R)
            row(f"dropout {op} {n >> 20}M", m)
            if "fastnn_regen" in m: print(f"|  regen backward: {m['fastnn_regen']:.1f} ms, / floor {m['fastnn_regen'] / m['floor']:.2f} |")
elif which == "optim":
    O = load("test_optim")
    from fastnn.nn import Parameter
    print("| case | fastnn ms | skip_if_nonfinite=True ms | NumPy ms | torch fused ms | torch foreach ms | floor ms | vs NumPy | vs fused (skip) | vs foreach (skip) | fastnn / floor (skip) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for layout in ("one", "mixed200"):
        for name, (cls, tname, kw, nst, has_fused) in O.OPTIMIZERS.items():
            total = 1 << 26; sizes = O.split_sizes(total, layout)
            datas, grads = O.arrays(sizes, 0), O.arrays(sizes, 1)
            fns = {}
            for k in ("fastnn", "fastnn_skip"):
                ps = [Parameter(d.copy()) for d in datas]
                for p, g in zip(ps, grads): p.grad = g
                fns[k] = cls(ps, **kw, skip_if_nonfinite=k == "fastnn_skip").step
            nd = [d.copy() for d in datas]; states = [[np.zeros_like(d) for d in datas] for _ in range(nst)]; t = [0]
            fns["numpy"] = lambda: O.numpy_step(name, kw, nd, grads, states, t)
            for flag in (["fused"] if has_fused else []) + ["foreach"]:
                ts = [torch.from_numpy(d.copy()) for d in datas]
                for t_, g in zip(ts, grads): t_.grad = torch.from_numpy(g)
                fns["torch_" + flag] = getattr(torch.optim, tname)(ts, **kw, **{flag: True}).step
            flat = [np.ones(total, np.float32) for _ in range(1 + nst)]; src = np.ones(total, np.float32)
            fns["floor"] = lambda: fastnn._cpu.stream_update(src, flat)
            m = rr(fns, R)
            cells = [f"{name} 64M {layout}"] + [f"{m[k]:.1f}" if k in m else "" for k in ("fastnn", "fastnn_skip", "numpy", "torch_fused", "torch_foreach", "floor")]
            cells += [f"{m['numpy'] / m['fastnn']:.1f}x", f"{m['torch_fused'] / m['fastnn']:.2f}x ({m['torch_fused'] / m['fastnn_skip']:.2f}x)" if 'torch_fused' in m else "",
                      f"{m['torch_foreach'] / m['fastnn']:.2f}x ({m['torch_foreach'] / m['fastnn_skip']:.2f}x)", f"{m['fastnn'] / m['floor']:.2f} ({m['fastnn_skip'] / m['floor']:.2f})"]
            print("| " + " | ".join(cells) + " |", flush=True)
            del fns, datas, grads, nd, states, flat; gc.collect()
elif which == "chan":
    P = load("test_prelu_maxout")
    print(HDR)
    c = P.Case(P.SHAPES["64M"])
    for op in ("prelu_forward", "prelu_backward", "maxout_forward", "maxout_backward"):
        fns = {"fastnn": P.fastnn_call(c, op, False), "fastnn_out": P.fastnn_call(c, op, True),
               "numpy": P.numpy_call(c, op), "torch": P.torch_call(c, op), "floor": P.floor_call(c, op)}
        row(f"{op} 64M", rr(fns, R))
elif which == "bnrelu":
    B = load("test_batch_norm")
    print("| case | fused ms | fused out= ms | BN + separate ReLU ms | PyTorch ms | floor ms | vs unfused | vs PyTorch | out= / floor |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for layout in ("NCHW", "NHWC"):
        c = B.Case((64, 64, 56, 56), layout)
        for op in ("forward_train", "forward_eval", "backward"):
            fns = {k: B.bn_relu_fastnn(c, op, k) for k in ("fused", "fused_out", "unfused")}
            fns["torch"] = B.bn_relu_torch(c, op); fns["floor"] = B.bn_relu_floor(c, op)
            m = rr(fns, R, slow=())
            print(f"| {op} {layout} 64x64x56x56 | {m['fused']:.2f} | {m['fused_out']:.2f} | {m['unfused']:.2f} | {m['torch']:.2f} | {m['floor']:.2f} | {m['unfused'] / m['fused']:.2f}x | {m['torch'] / m['fused']:.2f}x | {m['fused_out'] / m['floor']:.2f} |", flush=True)
