"""Losses with torch's names and reductions: ``loss = criterion(input, target)``, then
``criterion.backward()`` returns d loss / d input (``backward(dloss)`` scales it, as the
gradient flowing into the loss; with reduction='none' dloss, one value per element or
row, is required)."""

from ..functional import raw as F  # arrays only: no Parameter unwrapping
from .module import Module, array_module, check_float, check_input, check_int, is_array

__all__ = ["CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss"]


class _Loss(Module):
    def __init__(self, reduction):
        super().__init__()
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        self.reduction = reduction

    def _dloss(self, dloss, shape, dtype):
        """dloss as an array or number ready to multiply; None (for a reduced loss) means 1."""
        if dloss is None:
            if self.reduction == "none":
                raise ValueError(f"{type(self).__name__}.backward: reduction='none' needs dloss, the "
                                 f"gradient for each of the {shape} losses")
            return None
        if self.reduction == "none":
            if not is_array(dloss) or dloss.shape != shape:
                raise ValueError(f"{type(self).__name__}.backward: expected dloss of shape {shape}, got "
                                 f"{getattr(dloss, 'shape', type(dloss).__name__)}")
            return dloss.astype(dtype, copy=False)
        if is_array(dloss) and dloss.size != 1:
            raise ValueError(f"{type(self).__name__}.backward: the loss is a scalar, so dloss must be "
                             f"one number, got shape {dloss.shape}")
        return dtype.type(dloss.item() if is_array(dloss) else check_float(dloss, "dloss"))

    def _reduce(self, per_element):
        if self.reduction == "mean":
            return per_element.mean()
        if self.reduction == "sum":
            return per_element.sum()
        return per_element

    def _pair(self, input, target):
        """input and target: arrays of one float dtype and one shape (TypeError/ValueError)."""
        input = check_input(self, input)
        if not is_array(target):
            raise TypeError(f"{type(self).__name__}: target must be an array, got {type(target).__name__}")
        if target.dtype != input.dtype:
            raise TypeError(f"{type(self).__name__}: target has dtype {target.dtype} but input has {input.dtype}")
        if target.shape != input.shape:
            raise ValueError(f"{type(self).__name__}: target has shape {tuple(target.shape)} but input has "
                             f"{tuple(input.shape)}")
        return input, target

    def extra_repr(self):
        return "" if self.reduction == "mean" else f"reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy of class scores input (N, C) against class indices target
    (N,) (int32 or int64), through fastnn's fused softmax + cross-entropy kernel.

    ``reduction``: 'mean' over the rows that count, 'sum', or 'none' (one loss per row,
    0 for ignored rows). ``ignore_index``: rows whose target equals it count for nothing.
    ``label_smoothing`` eps in [0, 1]: the target is (1 - eps) * onehot + eps / C, so each
    row's loss is (1 - eps) * nll + eps * mean_k(-log p_k). Keeps the softmax
    probabilities and the targets (and the kept rows' mask when some are ignored); the
    backward writes its result over the probabilities."""

    def __init__(self, *, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        self.ignore_index = check_int(ignore_index, "ignore_index")
        self.label_smoothing = check_float(label_smoothing, "label_smoothing")
        if not 0 <= self.label_smoothing <= 1:
            raise ValueError(f"label_smoothing must be in [0, 1], got {self.label_smoothing}")

    def forward(self, input, target):
        logits = check_input(self, input)
        name = type(self).__name__
        if logits.ndim != 2:
            raise ValueError(f"{name}: expected input of shape (N, C) (class scores), got {tuple(logits.shape)}")
        if not is_array(target):
            raise TypeError(f"{name}: target must be an array of class indices, got {type(target).__name__}")
        if target.dtype.kind not in "iu":
            raise TypeError(f"{name}: target must hold class indices (int32 or int64), got dtype {target.dtype}")
        if target.shape != logits.shape[:1]:
            raise ValueError(f"{name}: target must have shape ({logits.shape[0]},), got {tuple(target.shape)}")
        xp = array_module(logits)
        kept = target != self.ignore_index
        if bool(kept.all()):
            kept = None
        else:  # only the rows that count go to the kernel
            logits, target = xp.ascontiguousarray(logits[kept]), target[kept]
        loss, probs = F.softmax_cross_entropy(logits, target)
        eps = self.label_smoothing
        if self.reduction != "mean" or eps:
            rows = self._row_losses(xp, logits, target, probs, eps)
            if self.reduction == "mean":
                loss = rows.mean()
            elif self.reduction == "sum":
                loss = rows.sum()
            elif kept is not None:
                loss = xp.zeros(input.shape[0], logits.dtype)
                loss[kept] = rows
            else:
                loss = rows
        self._saved = (probs, target, kept, input.shape)
        return loss

    @staticmethod
    def _row_losses(xp, logits, target, probs, eps):
        """Each row's loss from the kernel's probabilities: log-sum-exp = max z - log(max p)
        (max p >= 1/C, so the log is accurate), nll = log-sum-exp - z[target]."""
        rows = xp.arange(logits.shape[0])
        lse = logits.max(axis=1) - xp.log(probs.max(axis=1))
        nll = lse - logits[rows, target]
        if not eps:
            return nll
        return (1 - eps) * nll + eps * (lse - logits.mean(axis=1))

    def backward(self, dloss=None):
        probs, target, kept, shape = self._saved_state()
        xp = array_module(probs)
        dloss = self._dloss(dloss, shape[:1], probs.dtype)
        self._saved = None
        m, c = probs.shape
        rows = xp.arange(m)
        eps = self.label_smoothing
        if self.reduction == "mean":
            grad = F.softmax_cross_entropy_backward(probs, target, out=probs)  # (p - onehot) / m
            scale = 1.0 / m if m else 0.0
        else:
            grad = probs
            grad[rows, target] -= 1
            scale = 1.0
        if eps:  # d/dz of eps * mean_k(-log p_k) adds eps * (onehot - 1/C) to p - onehot
            grad[rows, target] += eps * scale
            grad -= eps * scale / c
        if self.reduction == "none":
            grad *= (dloss if kept is None else dloss[kept])[:, None]
        elif dloss is not None:
            grad *= dloss
        if kept is None:
            return grad
        full = xp.zeros(shape, grad.dtype)
        full[kept] = grad
        return full

    def extra_repr(self):
        parts = [] if self.reduction == "mean" else [f"reduction={self.reduction!r}"]
        if self.ignore_index != -100:
            parts.append(f"ignore_index={self.ignore_index}")
        if self.label_smoothing:
            parts.append(f"label_smoothing={self.label_smoothing}")
        return ", ".join(parts)


class MSELoss(_Loss):
    """Mean squared error (input - target)**2, reduced by ``reduction``. Keeps input - target."""

    def __init__(self, *, reduction="mean"):
        super().__init__(reduction)

    def forward(self, input, target):
        input, target = self._pair(input, target)
        diff = input - target
        self._saved = diff
        return self._reduce(diff * diff)

    def backward(self, dloss=None):
        diff = self._saved_state()
        dloss = self._dloss(dloss, diff.shape, diff.dtype)
        self._saved = None
        scale = 2.0 / diff.size if self.reduction == "mean" and diff.size else 2.0
        grad = diff * diff.dtype.type(scale)
        if dloss is not None:
            grad *= dloss
        return grad


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of sigmoid(input) against target in [0, 1], in the stable
    form max(x, 0) - x * t + log(1 + exp(-|x|)) (no overflow for any x). The gradient is
    sigmoid(x) - t (fastnn's sigmoid kernel). Keeps input and target (references)."""

    def __init__(self, *, reduction="mean"):
        super().__init__(reduction)

    def forward(self, input, target):
        x, t = self._pair(input, target)
        xp = array_module(x)
        per_element = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        self._saved = (x, t)
        return self._reduce(per_element)

    def backward(self, dloss=None):
        x, t = self._saved_state()
        dloss = self._dloss(dloss, x.shape, x.dtype)
        self._saved = None
        grad = F.sigmoid(x)
        grad -= t
        if self.reduction == "mean" and x.size:
            grad *= x.dtype.type(1.0 / x.size)
        if dloss is not None:
            grad *= dloss
        return grad
