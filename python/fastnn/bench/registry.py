"""The benchmark framework: one registry for ``fastnn bench`` and for bench/test_*.py.

A Case is one operation at one size and layout, float32. ``case.build(torch)`` makes
its arrays and returns a Built: the implementations timed side by side, each a
callable with no argument, in this order:

  fastnn       the default call (a fresh result)
  fastnn_out   the same call writing into out= arrays
  numpy        what a user writes in NumPy
  torch        the PyTorch CPU call (absent without torch)
  torch_out    the same writing into preallocated out= tensors, where torch has an
               out= form of the op (absent without torch)
  extras       a case's other variants (Case.extras: key and label)
  floor        native streaming passes with the case's own traffic (Floor)

Every implementation returns what it computed, so tests can check they agree.
Sizes count the elements of the case's main array; a case made with its own size (a
model's batch, a real model's parameter list, a loop's shapes) runs once at it.

The cases themselves live in the family modules of ``fastnn.bench.families``: each
has a ``cases()`` giving its Cases without a size (see that package to add one).
"""

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from fastnn import _cpu

C, HW = 64, 32  # channels and spatial side of the image cases


def size_label(n):
    for unit, div in (("M", 1 << 20), ("K", 1 << 10)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return str(n)


def parse_size(text):
    """'256K', '64M' or '1000' -> elements."""
    t = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        n = int(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        raise ValueError(f"size {text!r} is not a count like 256K or 64M") from None
    if n < 1:
        raise ValueError(f"size {text!r} must be at least 1")
    return n


# ---------------------------------------------------------------------- memory floor

def _f32(a):  # a uint8 mask streams as float32 words (a last partial word left out)
    return a.reshape(-1).view(np.uint8)[: a.nbytes // 4 * 4].view(np.float32)


def stream(reads=(), writes=(), inplace=()):
    """One pass of a Floor over float32 arrays of one size: `reads` read, `writes`
    written out of place, `inplace` read and written."""
    return tuple(tuple(_f32(a) for a in arrays) for arrays in (reads, writes, inplace))


class Floor:
    """The memory floor: native streaming passes (stream(); run by _cpu.stream_pass, a
    pass that only reads by _cpu.stream_read). Its bytes are the least any
    implementation of the case must move.

    A case that also computes (a matmul beside a kernel) gives that work as
    ``work=(label, callable)``: the floor runs it `repeat` times, then the passes
    `repeat` times, apart, so nothing they do competes. ``bytes`` counts one repeat."""

    def __init__(self, *passes, work=None, repeat=1):
        self.passes, self.work, self.repeat = passes, work, repeat

    def __call__(self):
        if self.work is not None:
            for _ in range(self.repeat):
                self.work[1]()
        for _ in range(self.repeat):
            for reads, writes, inplace in self.passes:
                if writes or inplace:
                    _cpu.stream_pass(reads, writes, inplace)
                else:
                    for a in reads:
                        _cpu.stream_read(a)

    @property
    def bytes(self):
        return sum(sum(a.nbytes for a in r + w) + 2 * sum(a.nbytes for a in k)
                   for r, w, k in self.passes)

    @property
    def pattern(self):
        parts = [self.work[0]] if self.work is not None else []
        for r, w, k in self.passes:
            counts = [f"{verb} {len(arrays)}" for verb, arrays in
                      (("read", r), ("write", w), ("in place", k)) if arrays]
            parts.append(", ".join(counts) + f" ({size_label((r + w + k)[0].size)} each)")
        return " + ".join(parts)


@dataclass
class Built:
    impls: dict                      # name -> callable, timed in this order
    floor: Floor
    # name -> function of the call's result giving the arrays tests compare after one
    # call (default: the result; optimizers: each parameter's update)
    views: dict = field(default_factory=dict)
    # outputs drawn at random per implementation: a check each must pass instead
    random_check: Optional[Callable] = None
    # iterations of the case's work in one call (a loop of small steps): the table
    # shows the time of one; the floor repeats as often (Floor.repeat)
    inner: int = 1
    # whether the table reports each implementation's time over the floor's, in
    # microseconds (a per-step overhead: small tensors, many of them)
    overhead: bool = False
    # a case timed outside this process (an MPI job): timed(rounds, budget_s) ->
    # {implementation: (median seconds, timed calls)}, used instead of calling the impls
    timed: Optional[Callable] = None


@dataclass(frozen=True)
class Case:
    family: str
    op: str            # "gelu_tanh backward", "adam step", ...
    layout: str        # flat, NCHW, NHWC, K=1000, one, mixed200, ... (what the size is cut into)
    make: Callable = field(repr=False, compare=False)  # make(n, torch) -> Built
    extras: tuple = ()  # (key, label) of each other variant the table shows
    has_out: bool = True  # fastnn takes out= (optimizers update in place)
    torch_out: bool = False  # torch has an out= form of the op
    n: int = 0         # elements of the main array (0: a family's case before sizing; set:
                       # the case's own size, run once whatever the sizes asked)
    dtype: str = "float32"
    in_process: bool = True  # False: timed by a job of its own (Built.timed); not in --quick
                             # (unless --ops names it) nor in the pytest-benchmark suite

    def at(self, n):
        """This case at n elements."""
        return dataclasses.replace(self, n=n)

    @property
    def size(self):
        return size_label(self.n)

    @property
    def name(self):
        return f"{self.op} {self.layout} {self.size}"

    @property
    def extra_keys(self):
        return tuple(key for key, _ in self.extras)

    def tokens(self):
        """What an --ops pattern is matched against."""
        return (self.family, self.op.split()[0], self.op, self.layout, self.name)

    def impl_names(self, with_torch):
        """The implementations build() gives, in their timing order."""
        names = ["fastnn"] + (["fastnn_out"] if self.has_out else []) + ["numpy"]
        names += ["torch"] if with_torch else []
        names += ["torch_out"] if with_torch and self.torch_out else []
        names += [e for e in self.extra_keys if with_torch or not e.startswith("torch")]
        return names + ["floor"]

    def build(self, torch=None):
        return self.make(self.n, torch)


# ------------------------------------------------------------ helpers of the families

def rng(seed=0):
    return np.random.default_rng(seed)


def image(n, layout, generator):
    """A float32 (N, C, HW, HW) batch of about n elements (N at least 1), channels
    last in memory for layout NHWC."""
    x = generator.standard_normal((max(1, n // (C * HW * HW)), C, HW, HW), dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x


# --------------------------------------------------------------------------- registry

def cases(sizes):
    """Every family's cases at each size (elements of the main array), size by size;
    then the cases a family made with their own size (n set: a model's batch), once."""
    from . import families

    unsized = [case for module in families.modules() for case in module.cases()]
    return [case.at(n) for n in sizes for case in unsized if not case.n] + [case for case in unsized if case.n]


def select(all_cases, patterns):
    """The cases any of the patterns (fnmatch, against family, op name, op, layout or
    the full name) matches. A pattern matching nothing is a ValueError naming what
    exists."""
    chosen = []
    for pat in patterns:
        hits = [c for c in all_cases if any(fnmatch.fnmatch(t, pat) for t in c.tokens())]
        if not hits:
            names = sorted({t for c in all_cases for t in c.tokens()[:2]})
            raise ValueError(f"no benchmark case matches {pat!r}; families and ops: {', '.join(names)}")
        chosen += [c for c in hits if c not in chosen]
    return [c for c in all_cases if c in chosen]
