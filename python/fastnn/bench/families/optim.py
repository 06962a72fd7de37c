"""Every optimizer's step over one array and over 200 arrays of mixed sizes with the
same total; PyTorch fused (where it has it) and foreach. And a real model's parameter
list, 1,000 small arrays (256K elements in all, whatever --sizes says), where the step
is mostly per-tensor overhead: beside it, fastnn's step over one array of the same
total, so the difference is fastnn's per-step overhead for 1,000 tensors."""

import functools

import numpy as np

import fastnn
from ..registry import Built, Case, Floor, rng, stream

# name: (class in fastnn.optim and torch.optim, keyword arguments, state arrays, torch has fused=True)
OPTIMIZERS = {
    "sgd_momentum": ("SGD", dict(lr=1e-3, momentum=0.9), 1, True),
    "adagrad": ("Adagrad", dict(lr=1e-2), 1, True),
    "rmsprop": ("RMSprop", dict(lr=1e-2), 1, False),
    "adam": ("Adam", dict(lr=1e-3), 2, True),
    "adamw": ("AdamW", dict(lr=1e-3), 2, True),
    "adadelta": ("Adadelta", dict(lr=1.0), 2, False),
}
SMALL_TOTAL = 1 << 18  # elements of the 1,000 small tensors


def split_sizes(total, layout):
    """'one': one array; 'mixed200': 200 of lognormal sizes (a few big matrices, many
    small vectors) with the same total; 'small1000': 1,000 of them (a real model's
    parameter list: weights, biases, norm scales)."""
    if layout == "one":
        return [total]
    count = 1000 if layout == "small1000" else 200
    w = rng(1).lognormal(0.0, 1.5, count)
    sizes = np.maximum(1, np.floor(w / w.sum() * total)).astype(np.int64)
    sizes[0] += total - sizes.sum()
    return [int(s) for s in sizes]


def numpy_step(name, kw, ps, gs, states, t):
    """One step of the named optimizer over the arrays ps in NumPy, as a user writes it."""
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
    elif name == "adadelta":
        for p, g, s, acc in zip(ps, gs, states[0], states[1]):
            s *= 0.9
            s += 0.1 * g * g
            delta = np.sqrt(acc + 1e-6) / np.sqrt(s + 1e-6) * g
            acc *= 0.9
            acc += 0.1 * delta * delta
            p -= lr * delta
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


def _optim(name, layout, n, torch):
    from fastnn.nn import Parameter

    cls_name, kw, n_states, has_fused = OPTIMIZERS[name]
    cls = getattr(fastnn.optim, cls_name)
    sizes = split_sizes(n, layout)
    gen = rng()
    datas = [gen.standard_normal(k, dtype=np.float32) for k in sizes]
    grads = [gen.standard_normal(k, dtype=np.float32) for k in sizes]
    impls, views = {}, {}

    def fastnn_step(key, skip):
        ps = [Parameter(d.copy()) for d in datas]
        for p, g in zip(ps, grads):
            p.grad = g
        impls[key] = cls(ps, **kw, skip_if_nonfinite=skip).step
        views[key] = lambda _: [p.data - d for p, d in zip(ps, datas)]

    def torch_step(key, flag):
        ts = [torch.from_numpy(d.copy()) for d in datas]
        for t_, g in zip(ts, grads):
            t_.grad = torch.from_numpy(g)
        impls[key] = getattr(torch.optim, cls_name)(ts, **kw, **{flag: True}).step
        views[key] = lambda _: [t_.numpy() - d for t_, d in zip(ts, datas)]

    fastnn_step("fastnn", False)
    nd = [d.copy() for d in datas]
    states = [[np.zeros_like(d) for d in datas] for _ in range(n_states)]
    t = [0]
    impls["numpy"] = lambda: numpy_step(name, kw, nd, grads, states, t)
    views["numpy"] = lambda _: [p - d for p, d in zip(nd, datas)]
    if torch is not None:
        torch_step("torch", "fused" if has_fused else "foreach")
    if layout == "small1000":  # the same step over one array of the same total
        one = Parameter(np.concatenate(datas))
        one.grad = np.concatenate(grads)
        impls["fastnn_one"] = cls([one], **kw).step
        views["fastnn_one"] = lambda _: np.split(one.data - np.concatenate(datas), np.cumsum(sizes)[:-1])
    fastnn_step("fastnn_skip", True)
    if torch is not None and has_fused:
        torch_step("torch_foreach", "foreach")
    # the gradient read; the parameter and each state read and written, one pass
    floor = Floor(stream([np.ones(n, np.float32)],
                         inplace=[np.ones(n, np.float32) for _ in range(1 + n_states)]))
    impls["floor"] = floor
    return Built(impls, floor, views, overhead=layout == "small1000")


def cases():
    for layout in ("one", "mixed200", "small1000"):
        for name in OPTIMIZERS:
            extras = (("fastnn_skip", "fastnn skip_if_nonfinite"),)
            if OPTIMIZERS[name][3]:
                extras += (("torch_foreach", "PyTorch foreach"),)
            if layout == "small1000":
                extras = (("fastnn_one", "fastnn one array"),) + extras
            yield Case("optim", f"{name} step", layout, functools.partial(_optim, name, layout),
                       extras=extras, has_out=False, n=SMALL_TOTAL if layout == "small1000" else 0)
