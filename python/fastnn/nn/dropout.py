"""``Dropout`` over fastnn's counter-based (Philox) dropout kernel."""

from ..functional import raw as F  # arrays only: no Parameter unwrapping
from .. import random as _random
from .module import Module, check_bool, check_float, check_grad, check_input

__all__ = ["Dropout"]

_IDENTITY = object()  # the "mask" of a forward that passed x through (eval, p = 0)


class Dropout(Module):
    """Inverted dropout (torch.nn.Dropout): in training each element is zeroed with
    probability p and the others scaled by 1 / (1 - p); in eval (or p = 0) y is x itself.

    The layer owns ``generator``, a ``fastnn.random.Generator`` (seed: an int, or None for
    one drawn from ``fastnn.random``'s global generator); each training forward draws a
    fresh (seed, offset) from it. Keeps the bit-packed mask (one bit per element) for
    the backward, or with ``keep_mask=False`` only (seed, offset), and the backward
    regenerates the mask. ``inplace=True`` writes y over x."""

    def __init__(self, p=0.5, inplace=False, *, keep_mask=True, seed=None):
        super().__init__()
        self.p = check_float(p, "p")
        if not 0 <= self.p <= 1:
            raise ValueError(f"dropout probability has to be between 0 and 1, but got {self.p}")
        self.inplace = check_bool(inplace, "inplace")
        self.keep_mask = check_bool(keep_mask, "keep_mask")
        self.generator = _random.Generator(_random.fresh_seed() if seed is None else seed)

    def forward(self, x):
        x = check_input(self, x)
        if not self.training or self.p == 0:
            self._saved = (_IDENTITY, None, x.shape, x.dtype)
            return x
        out = x if self.inplace else None
        if self.keep_mask:
            y, mask = F.dropout(x, self.p, generator=self.generator, out=out)
            self._saved = (mask, None, x.shape, x.dtype)
        else:
            seed, offset = self.generator.draw(x.size)
            y, _ = F.dropout(x, self.p, seed=seed, offset=offset, out=out)
            self._saved = (None, (seed, offset), x.shape, x.dtype)
        return y

    def backward(self, dy, *, input_grad=True):
        mask, seed_offset, shape, dtype = self._saved_state(input_grad)
        dy = check_grad(self, dy, shape, dtype)
        self._saved = None
        if not input_grad:
            return None
        if mask is _IDENTITY:
            return dy
        if mask is not None:
            return F.dropout_backward(dy, mask, self.p)
        seed, offset = seed_offset
        return F.dropout_backward(dy, None, self.p, seed=seed, offset=offset)

    def extra_repr(self):
        s = f"p={self.p}, inplace={self.inplace}"
        return s if self.keep_mask else s + ", keep_mask=False"
