"""Dropout (p = 0.5) forward, and backward with the mask and with the mask
regenerated from the seed."""

import functools

import numpy as np

import fastnn
from ..registry import Built, Case, Floor, rng, stream

F = fastnn.F
P, SEED = 0.5, 1234


def _dropout(direction, n, torch):
    x = rng().standard_normal(n, dtype=np.float32)
    y, mask = np.empty_like(x), F.dropout_mask(n, P, seed=SEED)
    mask_out = np.empty_like(mask)
    gen = rng(1)
    scale = np.float32(1 / (1 - P))
    if direction == "forward":
        impls = {"fastnn": lambda: F.dropout(x, P, seed=SEED),
                 "fastnn_out": lambda: F.dropout(x, P, seed=SEED, out=(y, mask_out)),
                 "numpy": lambda: x * (gen.random(n) >= P) / np.float32(1 - P)}
        if torch is not None:
            tx = torch.from_numpy(x)
            impls["torch"] = lambda: torch.nn.functional.dropout(tx, P, training=True)
            t_y, t_keep = torch.from_numpy(np.empty_like(x)), torch.empty(n, dtype=torch.bool)
            impls["torch_out"] = lambda: torch.ops.aten.native_dropout.out(tx, P, True, out0=t_y, out1=t_keep)
        floor = Floor(stream([x], [y]), stream(writes=[mask_out]))

        def random_check(r):  # each element dropped or scaled
            got = np.asarray(r[0])
            assert np.all((got == 0) | (got == x * scale)), "dropout output is not 0 or x / (1 - p)"
            assert 0 < np.count_nonzero(got) < n
    else:
        keep = np.unpackbits(mask, bitorder="little", count=n).astype(bool)
        impls = {"fastnn": lambda: F.dropout_backward(x, mask, P),
                 "fastnn_out": lambda: F.dropout_backward(x, mask, P, out=y),
                 "numpy": lambda: x * keep / np.float32(1 - P)}
        if torch is not None:
            tx, tkeep = torch.from_numpy(x), torch.from_numpy(keep)
            impls["torch"] = lambda: torch.ops.aten.native_dropout_backward(tx, tkeep, 1 / (1 - P))
            t_y = torch.from_numpy(np.empty_like(x))
            impls["torch_out"] = lambda: torch.ops.aten.native_dropout_backward.out(tx, tkeep, 1 / (1 - P),
                                                                                   out=t_y)
        impls["fastnn_regen"] = lambda: F.dropout_backward(x, None, P, seed=SEED, out=y)
        floor = Floor(stream([x], [y]), stream([mask]))
        random_check = None
    impls["floor"] = floor
    return Built(impls, floor, random_check=random_check)


def cases():
    for direction in ("forward", "backward"):
        yield Case("dropout", f"dropout {direction}", "flat", functools.partial(_dropout, direction),
                   extras=(("fastnn_regen", "fastnn regenerated mask"),) if direction == "backward" else (),
                   torch_out=True)
