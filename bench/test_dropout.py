"""Dropout: fastnn vs NumPy vs PyTorch CPU vs the memory floor, float32, p = 0.5.

Each group (op, n) holds:
  fastnn        the default call (fresh y and mask)
  fastnn_out    the same call writing into out= arrays
  fastnn_regen  (backward) the mask regenerated from (seed, offset), none stored
  numpy         what a user writes: x * (rng.random(n) >= p) / (1 - p); dy * keep / (1 - p)
  torch         torch.nn.functional.dropout; aten's native_dropout_backward
  floor         native streaming copies of the same bytes: x -> y plus the mask's n/8
                bytes (forward and backward: one float array read, one written, the mask)
"""

import numpy as np
import pytest

import fastnn

SIZES = [1 << 20, 1 << 24, 1 << 26]
IMPLS = ["fastnn", "fastnn_out", "fastnn_regen", "numpy", "torch", "floor"]
P, SEED = 0.5, 1234


class Case:
    def __init__(self, n):
        self.x = np.random.default_rng(0).standard_normal(n, dtype=np.float32)
        self.y = np.empty_like(self.x)
        self.mask = fastnn.F.dropout_mask(n, P, seed=SEED)
        self.mask_out = np.empty_like(self.mask)
        self.mask_src = np.zeros_like(self.mask)
        self.rng = np.random.default_rng(1)


def call(case, op, impl):
    F, x, n = fastnn.F, case.x, case.x.size
    if impl == "floor":
        def floor():
            fastnn._cpu.stream_copy(x, case.y)
            fastnn._cpu.stream_copy(case.mask_src, case.mask_out)
        return floor
    if op == "forward":
        if impl == "fastnn":
            return lambda: F.dropout(x, P, seed=SEED)
        if impl == "fastnn_out":
            return lambda: F.dropout(x, P, seed=SEED, out=(case.y, case.mask_out))
        if impl == "numpy":
            return lambda: x * (case.rng.random(n) >= P) / (1 - P)
        torch = pytest.importorskip("torch")
        tx = torch.from_numpy(x)
        return lambda: torch.nn.functional.dropout(tx, P, training=True)
    if impl == "fastnn":
        return lambda: F.dropout_backward(x, case.mask, P)
    if impl == "fastnn_out":
        return lambda: F.dropout_backward(x, case.mask, P, out=case.y)
    if impl == "fastnn_regen":
        return lambda: F.dropout_backward(x, None, P, seed=SEED, out=case.y)
    keep = np.unpackbits(case.mask, bitorder="little", count=n).astype(bool)
    if impl == "numpy":
        return lambda: x * keep / (1 - P)
    torch = pytest.importorskip("torch")
    tx, tkeep = torch.from_numpy(x), torch.from_numpy(keep)
    return lambda: torch.ops.aten.native_dropout_backward(tx, tkeep, 1 / (1 - P))


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SIZES, ids=lambda n: f"{n >> 20}M")
@pytest.mark.parametrize("op", ["forward", "backward"])
def test_dropout(benchmark, op, n, impl):
    if op == "forward" and impl == "fastnn_regen":
        pytest.skip("backward only")
    case = Case(n)
    benchmark.group = f"dropout {op} {n >> 20}M float32"
    benchmark.pedantic(call(case, op, impl), rounds=9 if n > 4_000_000 else 25, warmup_rounds=2)
