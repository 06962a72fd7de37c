"""One training step (forward, backward, AdamW update) of three models, float32:

  digits_mlp  batch 64, 64-256-256-10, each hidden layer Linear-BatchNorm-ReLU-Dropout(0.1)
  mlp         batch 128, 784-1024-1024-10, the same hidden layers
  cnn         batch 64, 3x32x32, two Conv(3x3, pad 1)-BatchNorm-ReLU-MaxPool(2) blocks
              (32 and 64 channels), then Linear(4096, 10)

fastnn.nn against the same model in torch.nn (eager, the same initial weights) and a
hand-written NumPy version. The size is the batch's elements; these cases have that
one size whatever --sizes says; a timed call runs STEPS steps back to back and the table
shows one. The floor is the AdamW update's own traffic (every
parameter, gradient and the two moments, one pass): a lower bound only, as the layers
move much more.

Each implementation returns the step's loss. Dropout masks differ between the three,
so an MLP's losses are only checked for being a fresh 10-class classifier's (near
ln 10); ``build(model, torch, dropout=0.0)`` gives models whose losses agree step by step.
"""

import functools
import math

import numpy as np

from ..registry import Built, Case, Floor, stream

DROPOUT = 0.1
STEPS = {"digits_mlp": 20, "mlp": 4, "cnn": 2}  # steps a timed call runs (tens of ms)
LR, WEIGHT_DECAY, BETAS, EPS = 1e-3, 1e-2, (0.9, 0.999), 1e-8

MODELS = {  # name: (input shape with the batch, hidden widths or None for the CNN)
    "digits_mlp": ((64, 64), (256, 256)),
    "mlp": ((128, 784), (1024, 1024)),
    "cnn": ((64, 3, 32, 32), None),
}


def layers(lib, model, dropout):
    """The model as a Sequential of lib (fastnn.nn or torch.nn)."""
    shape, hidden = MODELS[model]
    if hidden is None:
        return lib.Sequential(
            lib.Conv2d(3, 32, 3, padding=1), lib.BatchNorm2d(32), lib.ReLU(), lib.MaxPool2d(2),
            lib.Conv2d(32, 64, 3, padding=1), lib.BatchNorm2d(64), lib.ReLU(), lib.MaxPool2d(2),
            lib.Flatten(), lib.Linear(64 * 8 * 8, 10))
    mods, width = [], shape[1]
    for h in hidden:
        mods += [lib.Linear(width, h), lib.BatchNorm1d(h), lib.ReLU(), lib.Dropout(dropout)]
        width = h
    return lib.Sequential(*mods, lib.Linear(width, 10))


# ------------------------------------------------------------------ hand-written NumPy

class NumpyModel:
    """The same model written directly in NumPy: each layer's forward and backward by
    hand, im2col convolution, reshape max pooling, AdamW over a list of arrays."""

    def __init__(self, model, state, dropout, seed=0):
        self.model, self.p, self.rng = model, dropout, np.random.default_rng(seed)
        self.params = [np.array(v) for k, v in state.items() if k.endswith(("weight", "bias"))]
        self.running = [np.array(v) for k, v in state.items() if "running" in k]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t = 0

    def step(self, x, y):
        tape = []
        h, params, running = x, iter(self.params), iter(self.running)
        if self.model == "cnn":
            for _ in range(2):
                w, b = next(params), next(params)
                h = self._conv(h, w, b, tape)
                h = self._bn(h, next(params), next(params), next(running), next(running), (0, 2, 3), tape)
                h = np.maximum(h, 0)
                tape.append(("relu", h))
                h = self._pool(h, tape)
            tape.append(("flatten", h.shape))
            h = h.reshape(len(h), -1)
            n_hidden = 0
        else:
            n_hidden = len(MODELS[self.model][1])
        for _ in range(n_hidden):
            w, b = next(params), next(params)
            tape.append(("linear", h, w))
            h = h @ w.T + b
            h = self._bn(h, next(params), next(params), next(running), next(running), (0,), tape)
            h = np.maximum(h, 0)
            tape.append(("relu", h))
            if self.p:
                keep = (self.rng.random(h.shape, dtype=np.float32) >= self.p) / np.float32(1 - self.p)
                h = h * keep
                tape.append(("dropout", keep))
        w, b = next(params), next(params)
        tape.append(("linear", h, w))
        logits = h @ w.T + b
        shifted = logits - logits.max(1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        rows = np.arange(len(y))
        loss = -log_p[rows, y].mean()
        d = np.exp(log_p)
        d[rows, y] -= 1
        d /= len(y)
        grads = []
        for entry in reversed(tape):
            d = self._backward(entry, d, grads, last=entry is tape[0])
        self._adamw(grads[::-1])
        return loss

    def _bn(self, x, g, b, rm, rv, axes, tape):
        shape = [1] * x.ndim
        shape[1] = -1
        mean, var = x.mean(axes), x.var(axes)
        count = x.size // x.shape[1]
        rm *= 0.9
        rm += 0.1 * mean
        rv *= 0.9
        rv += 0.1 * var * count / (count - 1)
        invstd = 1 / np.sqrt(var + 1e-5)
        xhat = (x - mean.reshape(shape)) * invstd.reshape(shape)
        tape.append(("bn", xhat, g, invstd, axes, shape))
        return xhat * g.reshape(shape) + b.reshape(shape)

    def _conv(self, x, w, b, tape):
        n, c, hh, ww = x.shape
        o = w.shape[0]
        xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))  # (N, C, H, W, 3, 3)
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * hh * ww, c * 9)
        tape.append(("conv", cols, w, x.shape))
        out = cols @ w.reshape(o, -1).T + b
        return np.ascontiguousarray(out.reshape(n, hh, ww, o).transpose(0, 3, 1, 2))

    def _pool(self, x, tape):
        n, c, hh, ww = x.shape
        x6 = x.reshape(n, c, hh // 2, 2, ww // 2, 2)
        y = x6.max(axis=(3, 5))
        tape.append(("pool", x6 == y[:, :, :, None, :, None], x.shape))
        return y

    def _backward(self, entry, d, grads, last):
        kind = entry[0]
        if kind == "linear":
            _, x, w = entry
            grads += [d.sum(0), d.T @ x]  # (bias, weight): reversed at the end
            return None if last else d @ w
        if kind == "bn":
            _, xhat, g, invstd, axes, shape = entry
            dg, db = (d * xhat).sum(axes), d.sum(axes)
            grads += [db, dg]
            dxhat = d * g.reshape(shape)
            return (dxhat - dxhat.mean(axes, keepdims=True)
                    - xhat * (dxhat * xhat).mean(axes, keepdims=True)) * invstd.reshape(shape)
        if kind == "relu":
            return d * (entry[1] > 0)
        if kind == "dropout":
            return d * entry[1]
        if kind == "flatten":
            return d.reshape(entry[1])
        if kind == "pool":
            _, winners, shape = entry
            return (winners * d[:, :, :, None, :, None]).reshape(shape)
        _, cols, w, shape = entry  # conv
        n, c, hh, ww = shape
        o = w.shape[0]
        d2 = d.transpose(0, 2, 3, 1).reshape(-1, o)
        grads += [d2.sum(0), (d2.T @ cols).reshape(w.shape)]
        if last:
            return None
        dcols = (d2 @ w.reshape(o, -1)).reshape(n, hh, ww, c, 3, 3)
        dxp = np.zeros((n, c, hh + 2, ww + 2), d.dtype)
        for i in range(3):
            for j in range(3):
                dxp[:, :, i:i + hh, j:j + ww] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
        return dxp[:, :, 1:-1, 1:-1]

    def _adamw(self, grads):
        self.t += 1
        b1, b2 = BETAS
        step = LR / (1 - b1 ** self.t)
        bc2 = math.sqrt(1 - b2 ** self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            p *= 1 - LR * WEIGHT_DECAY
            m += (1 - b1) * (g - m)
            v *= b2
            v += (1 - b2) * g * g
            p -= step * m / (np.sqrt(v) / bc2 + EPS)


# ------------------------------------------------------------------------ the case

def build(model, torch, dropout=DROPOUT):
    """The three implementations of one step of `model`, from the same initial weights
    (torch's initialization when torch is there, else fastnn's)."""
    from fastnn import nn, optim

    shape = MODELS[model][0]
    gen = np.random.default_rng(0)
    x = gen.standard_normal(shape, dtype=np.float32)
    y = gen.integers(0, 10, shape[0])
    ours = layers(nn, model, dropout)
    impls = {}
    if torch is not None:
        torch.manual_seed(0)
        theirs = layers(torch.nn, model, dropout)
        ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    state = {k: v.copy() for k, v in ours.state_dict().items()}

    opt, loss_fn = optim.AdamW(ours.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY), \
        nn.CrossEntropyLoss()

    def fastnn_step():
        opt.zero_grad()
        loss = loss_fn(ours(x), y)
        ours.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        return loss

    impls["fastnn"] = fastnn_step
    impls["numpy"] = functools.partial(NumpyModel(model, state, dropout).step, x, y)
    if torch is not None:
        impls["torch"] = torch_step(torch, theirs, x, y)
    total = sum(p.numel() for p in ours.parameters())
    floor = Floor(stream([np.ones(total, np.float32)], inplace=[np.ones(total, np.float32) for _ in range(3)]))
    impls["floor"] = floor
    check = None
    if dropout and model != "cnn":
        def check(outputs):
            (loss,) = outputs
            assert np.isfinite(loss) and abs(float(loss) - math.log(10)) < 0.5, float(loss)
    return Built(impls, floor, random_check=check)


def torch_step(torch, model, x, y):
    """One forward, backward and AdamW step of a torch.nn model on (x, y), as a
    function returning the step's loss (a float)."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
    loss_fn, tx, ty = torch.nn.CrossEntropyLoss(), torch.from_numpy(x), torch.from_numpy(y)

    def step():
        opt.zero_grad()
        loss = loss_fn(model(tx), ty)
        loss.backward()
        opt.step()
        return float(loss.detach())

    return step


def _steps(step, count):
    def run():  # returns the first step's loss (the check wants a fresh model's)
        loss = step()
        for _ in range(count - 1):
            step()
        return loss
    return run


def _make(model, n, torch):
    """build()'s steps, STEPS[model] back to back a call, as a training loop runs them:
    one step timed alone between the other libraries' would measure their worker
    threads waking up or still spinning (a torch step's threads keep the cores for
    milliseconds after it, and NumPy's matmuls then wait)."""
    built = build(model, torch)
    count = STEPS[model]
    impls = {k: f if k == "floor" else _steps(f, count) for k, f in built.impls.items()}
    built.floor.repeat = count
    return Built(impls, built.floor, random_check=built.random_check, inner=count)


def cases():
    """Fixed-size cases (n set): the batch of each model."""
    for model, (shape, _) in MODELS.items():
        yield Case("training", f"{model} step", "x".join(map(str, shape)), functools.partial(_make, model),
                   has_out=False, n=math.prod(shape))
