"""PReLU (one slope per channel) and Maxout (2 pieces), forward and backward, over
(N, 64, 32, 32) images, N from the size."""

import functools

import numpy as np

import fastnn
from ..registry import C, Built, Case, Floor, image, rng, stream

F = fastnn.F
PIECES = 2


def _grouped(a):  # (N, C, H, W) -> (N, C / pieces, pieces, H, W)
    return a.reshape((a.shape[0], a.shape[1] // PIECES, PIECES) + a.shape[2:])


def _prelu_maxout(op, n, torch):
    gen = rng()
    x = image(n, "NCHW", gen)
    weight = gen.uniform(0.1, 0.3, C).astype(np.float32)
    dy = gen.standard_normal(x.shape, dtype=np.float32)
    small = _grouped(x).max(axis=2).shape
    dy_small = gen.standard_normal(small, dtype=np.float32)
    out, out_small, dweight = np.empty_like(x), np.empty(small, np.float32), np.empty_like(weight)
    w3 = weight.reshape(-1, 1, 1)
    half = x.reshape(2, -1)
    if op == "prelu forward":
        call = lambda o: lambda: F.prelu(x, weight, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call(out),
                 "numpy": lambda: np.where(x > 0, x, w3 * x)}
        floor = Floor(stream([x], [out]))
    elif op == "prelu backward":
        call = lambda o: lambda: F.prelu_backward(dy, x, weight, out=o)  # noqa: E731

        def numpy_backward():
            pos = x > 0
            return np.where(pos, dy, w3 * dy), np.where(pos, 0, x * dy).sum(axis=(0, 2, 3))

        impls = {"fastnn": call(None), "fastnn_out": call((out, dweight)), "numpy": numpy_backward}
        floor = Floor(stream([x, dy], [out]))
    elif op == "maxout forward":
        call = lambda o: lambda: F.maxout(x, PIECES, out=o)  # noqa: E731
        impls = {"fastnn": call(None), "fastnn_out": call(out_small),
                 "numpy": lambda: _grouped(x).max(axis=2)}
        floor = Floor(stream([half[0], half[1]], [out_small]))
    else:
        call = lambda o: lambda: F.maxout_backward(dy_small, x, PIECES, out=o)  # noqa: E731

        def numpy_backward():
            g = _grouped(x)
            dx = np.zeros_like(g)
            np.put_along_axis(dx, g.argmax(axis=2)[:, :, None], dy_small[:, :, None], axis=2)
            return dx.reshape(x.shape)

        impls = {"fastnn": call(None), "fastnn_out": call(out), "numpy": numpy_backward}
        halves = out.reshape(2, -1)
        floor = Floor(stream([half[0], half[1], dy_small], [halves[0], halves[1]]))
    if torch is not None:
        tx, tdy, tw = torch.from_numpy(x), torch.from_numpy(dy), torch.from_numpy(weight)
        if op == "prelu forward":
            impls["torch"] = lambda: torch.nn.functional.prelu(tx, tw)
        elif op == "prelu backward":
            def torch_backward():  # what autograd runs, then the weight's broadcast sum
                dx, dw = torch.ops.aten._prelu_kernel_backward(tdy, tx, tw.view(-1, 1, 1))
                return dx, dw.sum(dim=(0, 2, 3))
            impls["torch"] = torch_backward
        elif op == "maxout forward":
            impls["torch"] = lambda: _grouped(tx).amax(dim=2)
            t_small = torch.from_numpy(np.empty_like(out_small))
            impls["torch_out"] = lambda: torch.amax(_grouped(tx), dim=2, out=t_small)
        else:  # autograd's scatter through the saved indices
            index = _grouped(tx).max(dim=2).indices.unsqueeze(2)
            g = torch.from_numpy(dy_small).unsqueeze(2)
            impls["torch"] = lambda: torch.zeros(_grouped(tx).shape).scatter_(2, index, g).view(tx.shape)
            t_dx = _grouped(torch.from_numpy(np.empty_like(x)))
            impls["torch_out"] = lambda: t_dx.zero_().scatter_(2, index, g).view(tx.shape)
    impls["floor"] = floor
    return Built(impls, floor)


def cases():
    for op in ("prelu forward", "prelu backward", "maxout forward", "maxout backward"):
        # torch has no out= form of prelu
        yield Case("prelu_maxout", op, "NCHW", functools.partial(_prelu_maxout, op),
                   torch_out=op.startswith("maxout"))
