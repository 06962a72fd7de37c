"""Optimizer steps: fastnn vs NumPy vs PyTorch CPU vs the memory floor, float32.

Each group (optimizer, total parameters, layout) holds:
  fastnn          the default optimizer (skip_if_nonfinite=False): the update pass alone
  fastnn_skip     skip_if_nonfinite=True: one read-only pass over the gradients first
  numpy           the update rule in NumPy, in place where NumPy allows
  torch_fused     torch.optim with fused=True (Adam, AdamW, SGD, Adagrad)
  torch_foreach   torch.optim with foreach=True
  floor           one streaming pass with the update's traffic: the gradient read, the
                  parameter and each state array read and written (_cpu.stream_update
                  over one flat array per role of the same total size)

Layouts: "one" = a single array; "mixed200" = 200 arrays of mixed sizes with the same
total. Gradients stay fixed between steps (the traffic is what is measured).
"""

import numpy as np
import pytest

import fastnn
from fastnn import optim
from fastnn.nn import Parameter

SIZES = {"1M": 1 << 20, "16M": 1 << 24, "64M": 1 << 26}
LAYOUTS = ["one", "mixed200"]
IMPLS = ["fastnn", "fastnn_skip", "numpy", "torch_fused", "torch_foreach", "floor"]

# name: (fastnn class, torch class name, keyword arguments, state arrays, torch has fused)
OPTIMIZERS = {
    "sgd_momentum": (optim.SGD, "SGD", dict(lr=1e-3, momentum=0.9), 1, True),
    "adagrad": (optim.Adagrad, "Adagrad", dict(lr=1e-2), 1, True),
    "rmsprop": (optim.RMSprop, "RMSprop", dict(lr=1e-2), 1, False),
    "adam": (optim.Adam, "Adam", dict(lr=1e-3), 2, True),
    "adamw": (optim.AdamW, "AdamW", dict(lr=1e-3), 2, True),
}


def split_sizes(total, layout):
    if layout == "one":
        return [total]
    rng = np.random.default_rng(1)
    w = rng.lognormal(0.0, 1.5, 200)  # a few big matrices, many small vectors
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(np.int64)
    sizes[0] += total - sizes.sum()
    return [int(s) for s in sizes]


def arrays(sizes, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(n, dtype=np.float32) for n in sizes]


def numpy_step(name, kw, ps, gs, states, t):
    lr = kw["lr"]
    if name == "sgd_momentum":
        for p, g, b in zip(ps, gs, states[0]):
            b *= kw["momentum"]
            b += g
            p -= lr * b
    elif name == "adagrad":
        for p, g, s in zip(ps, gs, states[0]):
            s += g * g
            p -= lr * g / (np.sqrt(s) + 1e-10)
    elif name == "rmsprop":
        for p, g, s in zip(ps, gs, states[0]):
            s *= 0.99
            s += 0.01 * g * g
            p -= lr * g / (np.sqrt(s) + 1e-8)
    else:
        t[0] += 1
        b1, b2 = 0.9, 0.999
        step_size = lr / (1 - b1 ** t[0])
        bc2_sqrt = (1 - b2 ** t[0]) ** 0.5
        for p, g, m, v in zip(ps, gs, states[0], states[1]):
            if name == "adamw":
                p *= 1 - lr * 1e-2
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * g * g
            p -= step_size * m / (np.sqrt(v) / bc2_sqrt + 1e-8)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optim_step(benchmark, name, size, layout, impl):
    cls, torch_name, kw, n_states, has_fused = OPTIMIZERS[name]
    total = SIZES[size]
    sizes = split_sizes(total, layout)
    benchmark.group = f"optim {name} {size} {layout} float32"
    datas, grads = arrays(sizes, 0), arrays(sizes, 1)
    if impl in ("fastnn", "fastnn_skip"):
        ps = [Parameter(d) for d in datas]
        for p, g in zip(ps, grads):
            p.grad = g
        opt = cls(ps, **kw, skip_if_nonfinite=impl == "fastnn_skip")
        fn = opt.step
    elif impl == "numpy":
        states = [[np.zeros_like(d) for d in datas] for _ in range(n_states)]
        t = [0]
        fn = lambda: numpy_step(name, kw, datas, grads, states, t)  # noqa: E731
    elif impl.startswith("torch"):
        torch = pytest.importorskip("torch")
        if impl == "torch_fused" and not has_fused:
            pytest.skip(f"torch.optim.{torch_name} has no fused CPU path")
        ts = [torch.from_numpy(d) for d in datas]
        for t_, g in zip(ts, grads):
            t_.grad = torch.from_numpy(g)
        flag = {"fused": True} if impl == "torch_fused" else {"foreach": True}
        opt = getattr(torch.optim, torch_name)(ts, **kw, **flag)
        fn = opt.step
    else:
        flat = [np.ones(total, np.float32) for _ in range(1 + n_states)]
        src = np.ones(total, np.float32)
        fn = lambda: fastnn._cpu.stream_update(src, flat)  # noqa: E731
    big = total >= SIZES["16M"]
    benchmark.pedantic(fn, rounds=7 if big else 25, warmup_rounds=2 if big else 3)
