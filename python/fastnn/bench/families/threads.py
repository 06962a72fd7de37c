"""The thread fight: a training loop's shape, where a NumPy matmul (64x256 @ 256x256,
on NumPy's BLAS and its threads) alternates with a fastnn kernel: an AdamW step over
100,000 parameters, or GELU over a 64x4096 hidden layer. One call runs ITERS
iterations; the table shows one. fastnn runs with the default thread count, as a
user's script does, and (an extra) on one thread; PyTorch runs the same loop with its
own optimizer or activation. When a library's worker threads keep the cores after
their work, the other library's threads wait for them, and the loop runs many times
slower than on one thread. The floor: the matmuls alone, then the kernel's memory
traffic alone, apart."""

import numpy as np

import fastnn
from ..registry import Built, Case, Floor, rng, stream
from .activations import np_erf
from .optim import OPTIMIZERS, numpy_step

F = fastnn.F
ITERS = 20
ADAMW_PARAMS = 100_000
HIDDEN = (64, 4096)


def _matmul():
    gen = rng(2)
    a = gen.standard_normal((64, 256), dtype=np.float32)
    w = gen.standard_normal((256, 256), dtype=np.float32)
    return "64x256 @ 256x256 matmul", lambda: a @ w


def _on_threads(threads, body):
    """body() with fastnn on `threads` threads (None: as set), the setting restored."""
    if threads is None:
        return body()
    before = fastnn.get_num_threads()
    fastnn.set_num_threads(threads)
    try:
        return body()
    finally:
        fastnn.set_num_threads(before)


def _loop(matmul, step):
    def run():
        for _ in range(ITERS):
            matmul()
            result = step()
        return result
    return run


def _adamw(n, torch):
    from fastnn.nn import Parameter

    label, matmul = _matmul()
    kw = OPTIMIZERS["adamw"][1]
    gen = rng()
    start = gen.standard_normal(n, dtype=np.float32)
    grad = gen.standard_normal(n, dtype=np.float32)
    impls, views = {}, {}

    def fastnn_loop(key, threads):
        p = Parameter(start.copy())
        p.grad = grad
        loop = _loop(matmul, fastnn.optim.AdamW([p], **kw).step)
        impls[key] = lambda: _on_threads(threads, loop)
        views[key] = lambda _: p.data - start

    fastnn_loop("fastnn", None)
    p_np, states, t = start.copy(), [[np.zeros(n, np.float32)] for _ in range(2)], [0]
    impls["numpy"] = _loop(matmul, lambda: numpy_step("adamw", kw, [p_np], [grad], states, t))
    views["numpy"] = lambda _: p_np - start
    if torch is not None:
        tp = torch.from_numpy(start.copy())
        tp.grad = torch.from_numpy(grad)
        impls["torch"] = _loop(matmul, torch.optim.AdamW([tp], **kw).step)  # torch's default
        views["torch"] = lambda _: tp.numpy() - start
    fastnn_loop("fastnn_1thread", 1)
    # the gradient read; the parameter and both moments read and written
    floor = Floor(stream([np.ones(n, np.float32)], inplace=[np.ones(n, np.float32) for _ in range(3)]),
                  work=(label, matmul), repeat=ITERS)
    impls["floor"] = floor
    return Built(impls, floor, views, inner=ITERS)


def _gelu(n, torch):
    label, matmul = _matmul()
    h = rng().standard_normal(n, dtype=np.float32).reshape(-1, HIDDEN[1])
    out = np.empty_like(h)
    impls = {"fastnn": _loop(matmul, lambda: F.gelu(h))}
    impls["fastnn_out"] = _loop(matmul, lambda: F.gelu(h, out=out))
    impls["numpy"] = _loop(matmul, lambda: 0.5 * h * (1 + np_erf(h / np.float32(np.sqrt(2)))))
    if torch is not None:
        th = torch.from_numpy(h)
        impls["torch"] = _loop(matmul, lambda: torch.nn.functional.gelu(th))
    gelu_1thread = _loop(matmul, lambda: F.gelu(h))
    impls["fastnn_1thread"] = lambda: _on_threads(1, gelu_1thread)
    floor = Floor(stream([h], [out]), work=(label, matmul), repeat=ITERS)
    impls["floor"] = floor
    return Built(impls, floor, inner=ITERS)


def cases():
    extras = (("fastnn_1thread", "fastnn on 1 thread"),)
    yield Case("threads", "matmul + adamw step", "loop", _adamw, extras=extras, has_out=False,
               n=ADAMW_PARAMS)
    yield Case("threads", "matmul + gelu forward", "loop", _gelu, extras=extras,
               n=HIDDEN[0] * HIDDEN[1])
