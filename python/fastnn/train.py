"""The training workflow: ``fit`` with validation, early stopping and learning-rate
schedules, learning curves, the sanity checks the lectures teach (initial loss,
overfitting a small sample, a learning-rate sweep), random hyperparameter search, and
prediction with ensembles and Monte-Carlo dropout.

A typical run::

    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x_tr, y_tr, 64),
                  DataLoader(x_va, y_va, 256, shuffle=False), epochs=50,
                  scheduler=CosineAnnealingLR(opt, 50), early_stopping=EarlyStopping(patience=8))
    history.plot("curves.png")

Everything takes the array module from the data, so the same calls run on CuPy arrays.
"""

import contextlib
import copy
import math
import numbers
import sys
import time
import warnings

import numpy as np

from . import nn
from .functional import raw as _F
from ._checks import check_bool
from .nn.module import array_module, check_float, check_int, is_array
from .optim import Optimizer
from .optim.lr_scheduler import ReduceLROnPlateau

__all__ = ["fit", "evaluate", "predict", "accuracy", "History", "plot_history", "EarlyStopping",
           "check_initial_loss", "InitialLossCheck", "overfit_batch", "OverfitResult", "lr_find",
           "LRFinderResult", "random_search", "refine", "SearchResults", "LogUniform", "Uniform",
           "Choice", "BorderWarning", "Ensemble", "mc_predict"]


# --------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _modes(model, training, dropout=None):
    """Runs the block with the model in training (True) or eval (False) mode, Dropout
    layers in ``dropout`` mode if given, and restores every module's mode afterwards."""
    saved = [(m, m.training) for m in model.modules()]
    model.train(training)
    if dropout is not None:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.train(dropout)
    try:
        yield
    finally:
        for m, mode in saved:
            object.__setattr__(m, "training", mode)


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a fastnn.nn.Module, got {type(model).__name__}")


def _check_loss(loss_fn):
    if not isinstance(loss_fn, nn.Module):
        raise TypeError(f"loss_fn must be a fastnn.nn loss (e.g. nn.CrossEntropyLoss()), got "
                        f"{type(loss_fn).__name__}")
    if getattr(loss_fn, "reduction", "mean") != "mean":
        raise ValueError(f"loss_fn must average over the batch (reduction='mean'), got "
                         f"reduction={loss_fn.reduction!r}")


def _batches(data, name):
    """An iterable of (x, y) batches: a DataLoader, or any re-iterable of pairs."""
    if is_array(data) or isinstance(data, tuple):
        raise TypeError(f"{name} must be a DataLoader (or another re-iterable of (x, y) batches), "
                        f"got {type(data).__name__}; wrap arrays as DataLoader(x, y, batch_size)")
    if not hasattr(data, "__iter__"):
        raise TypeError(f"{name} must be a DataLoader, got {type(data).__name__}")
    if getattr(data, "y", 0) is None:
        raise ValueError(f"{name} yields x batches only; give the DataLoader the targets too: "
                         "DataLoader(x, y, ...)")
    return data


def accuracy(output, target):
    """The fraction of rows whose highest score is the target class: output (N, C) class
    scores and target (N,) class indices; or, for one logit per sample (N,) or (N, 1)
    (binary, as BCEWithLogitsLoss), output > 0 against target in {0, 1}."""
    return _as_float(_correct(output, target)) / max(output.shape[0], 1)


def _correct(output, target):
    """The number of correct predictions, as an array on output's device (no sync)."""
    if output.ndim == 2 and output.shape[1] > 1:
        return (output.argmax(axis=1) == target).sum()
    return ((output.reshape(-1) > 0) == (target.reshape(-1) > 0.5)).sum()


def _metric_functions(metrics):
    """{name: fn(output, target) -> per-batch sum as a device scalar or float}."""
    if isinstance(metrics, str) or not isinstance(metrics, (tuple, list)):
        raise TypeError(f"metrics must be a tuple or list of names or functions, got {metrics!r}")
    out = {}
    for m in metrics:
        if m == "accuracy":
            out["accuracy"] = _correct
        elif callable(m):
            name = getattr(m, "__name__", None) or type(m).__name__
            out[name] = (lambda fn: lambda o, t: fn(o, t) * o.shape[0])(m)  # fn gives a batch mean
        else:
            raise ValueError(f"unknown metric {m!r}: use 'accuracy' or a function fn(output, target) "
                             "returning the batch's mean")
    return out


def _as_float(value):
    return float(value.item()) if is_array(value) else float(value)


def _default_mode(monitor):
    return "min" if "loss" in monitor else "max"


# ---------------------------------------------------------------- predict, evaluate


def predict(model, x, batch_size=256, *, probabilities=False):
    """The model's outputs for x in eval mode (the modes are restored afterwards), in
    batches of ``batch_size``, concatenated; ``probabilities=True`` applies a softmax
    over the last axis."""
    _check_model(model)
    if not is_array(x):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    batch_size = check_int(batch_size, "batch_size", 1)
    probabilities = check_bool(probabilities, "probabilities")
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"x must hold at least one sample, got shape {tuple(x.shape)}")
    xp = array_module(x)
    outs = []
    with _modes(model, False):
        for i in range(0, x.shape[0], batch_size):
            out = model(x[i:i + batch_size])
            outs.append(_F.softmax(out) if probabilities else out)
    return xp.concatenate(outs)


def evaluate(model, loss_fn, loader, metrics=("accuracy",)):
    """The mean loss and metrics over every batch of ``loader`` (weighted by batch
    size), with the model in eval mode (modes restored afterwards): a dict like
    ``{'loss': 0.08, 'accuracy': 0.98}``."""
    _check_model(model)
    _check_loss(loss_fn)
    functions = _metric_functions(metrics)
    with _modes(model, False):
        return _run(model, loss_fn, _batches(loader, "loader"), functions, None)


def _run(model, loss_fn, loader, functions, optimizer, bar=None):
    """One pass over loader: training steps when an optimizer is given. Returns the
    size-weighted means of the loss and the metrics. Sums stay on the device until the end."""
    total_loss, totals, n = 0.0, dict.fromkeys(functions, 0.0), 0
    start = time.perf_counter()
    for i, batch in enumerate(loader):
        xb, yb = batch
        if optimizer is not None:
            optimizer.zero_grad()
        out = model(xb)
        loss = loss_fn(out, yb)
        if optimizer is not None:
            model.backward(loss_fn.backward(), input_grad=False)
            optimizer.step()
        m = xb.shape[0]
        n += m
        total_loss = total_loss + (loss.astype("float64") if hasattr(loss, "astype") else loss) * m
        for name, fn in functions.items():
            totals[name] = totals[name] + fn(out, yb)
        if bar is not None:
            bar.update(1)
            if i % 10 == 0:  # reading the loss waits for the device: not every batch
                speed = n / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix_str(f"loss {_as_float(total_loss) / n:.4f}, {speed:,.0f} samples/s", refresh=False)
    if n == 0:
        raise ValueError("the loader yielded no batches")
    result = {"loss": _as_float(total_loss) / n}
    result.update({name: _as_float(total) / n for name, total in totals.items()})
    return result


# --------------------------------------------------------------------------- History


class History:
    """What ``fit`` recorded, one value per epoch: ``history['loss']``,
    ``history['val_loss']``, ``history['accuracy']``, ``history['val_accuracy']``,
    ``history['lr']`` (the learning rate the epoch ran with, first parameter group) and
    ``history['time']`` (seconds). Training loss and metrics are the averages over the
    epoch's batches as they were trained (dropout on, weights moving); validation ones
    are computed after the epoch in eval mode. ``best_epoch`` (1-based) is the epoch
    whose weights the model holds when early stopping restored them; ``stopped_early``
    says whether it ended training."""

    def __init__(self):
        self.history = {}
        self.best_epoch = None
        self.stopped_early = False
        self.monitor = None

    def append(self, record):
        for key, value in record.items():
            self.history.setdefault(key, []).append(value)

    @property
    def epochs(self):
        """Epochs run."""
        return len(next(iter(self.history.values()), []))

    def __len__(self):
        return self.epochs

    def __getitem__(self, key):
        return self.history[key]

    def __contains__(self, key):
        return key in self.history

    def keys(self):
        return self.history.keys()

    def to_dict(self):
        """Plain lists and numbers (for json.dump)."""
        return {"history": {k: list(v) for k, v in self.history.items()}, "epochs": self.epochs,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early, "monitor": self.monitor}

    def plot(self, path=None, *, log_loss=False, title=None):
        """Learning curves (see ``plot_history``); returns the matplotlib Figure."""
        return plot_history(self, path, log_loss=log_loss, title=title)

    def __repr__(self):
        keys = ", ".join(self.history)
        return f"History({self.epochs} epochs: {keys})"


def _matplotlib_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting needs matplotlib, an optional extra: pip install 'fastnn[examples]' "
                          "(or pip install matplotlib)") from None
    return Figure


def plot_history(history, path=None, *, log_loss=False, title=None):
    """Learning curves: the loss (log scale with ``log_loss=True``) and each metric, train
    dashed and validation solid, per epoch, with the restored best epoch marked.
    ``history`` is a History or a dict of them by name (one color per model). Saves to
    ``path`` (PNG, SVG, PDF by the suffix) when given; returns the matplotlib Figure
    (no pyplot state is touched). matplotlib is an optional extra: ImportError saying
    so when it is missing."""
    histories = {"": history} if isinstance(history, History) else history
    if not isinstance(histories, dict) or not all(isinstance(h, History) for h in histories.values()):
        raise TypeError("history must be a History or a dict of name -> History")
    log_loss = check_bool(log_loss, "log_loss")
    Figure = _matplotlib_figure()
    metrics = []
    for h in histories.values():
        metrics += [k for k in h.keys() if k not in ("loss", "lr", "time") and not k.startswith("val_")
                    and k not in metrics]
    fig = Figure(figsize=(5.5 * (1 + len(metrics)), 4), layout="constrained")
    axes = fig.subplots(1, 1 + len(metrics), squeeze=False)[0]
    colors = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7"]
    for i, (name, h) in enumerate(histories.items()):
        color = colors[i % len(colors)]
        label = f"{name} " if name else ""
        epochs = np.arange(1, h.epochs + 1)
        for ax, key in zip(axes, ["loss"] + metrics):
            if key in h:
                ax.plot(epochs, h[key], "--", color=color, label=f"{label}train")
            if "val_" + key in h:
                ax.plot(epochs, h["val_" + key], "-", color=color, label=f"{label}validation")
            if h.best_epoch is not None:
                ax.axvline(h.best_epoch, color=color, linestyle=":", linewidth=1)
    for ax, key in zip(axes, ["loss"] + metrics):
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if log_loss:
        axes[0].set_yscale("log")
    if title:
        fig.suptitle(title)
    if path is not None:
        fig.savefig(path, dpi=120)
    return fig


# --------------------------------------------------------------------- early stopping


class EarlyStopping:
    """Stops ``fit`` when ``monitor`` ('val_loss' by default; 'val_accuracy', 'loss', ...)
    has not improved by more than ``min_delta`` for ``patience`` epochs in a row.
    ``mode``: 'min', 'max' or 'auto' (min for names with 'loss', max otherwise). The
    weights (and buffers: running statistics) of the best epoch are copied when it
    happens, and with ``restore_best_weights=True`` (the default) loaded back at the end
    of ``fit``, whether it stopped early or ran every epoch.

    After fit: ``best`` (the best value), ``best_epoch`` (1-based), ``stopped_epoch``
    (None if it ran to the end), ``best_state`` (the copied state dict). An instance can
    be used for several ``fit`` calls; each starts afresh."""

    def __init__(self, patience=5, min_delta=0.0, monitor="val_loss", *, mode="auto",
                 restore_best_weights=True):
        self.patience = check_int(patience, "patience", 0)
        self.min_delta = check_float(min_delta, "min_delta")
        if not self.min_delta >= 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str such as 'val_loss', got {type(monitor).__name__}")
        self.monitor = monitor
        if mode not in ("auto", "min", "max"):
            raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.mode = _default_mode(monitor) if mode == "auto" else mode
        self.restore_best_weights = check_bool(restore_best_weights, "restore_best_weights")
        self.reset()

    def reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = None
        self.best_state = None
        self.stopped_epoch = None
        self.wait = 0

    def improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, value, model, epoch):
        """After epoch ``epoch`` (1-based) with the monitored ``value``: copies the weights
        if it is the best so far. Returns True when training should stop."""
        value = float(value)
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            self.best_state = {k: v.copy() for k, v in model.state_dict().items()}
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def restore(self, model):
        """Load the best epoch's weights into model (nothing if there was no best)."""
        if self.best_state is not None:
            model.load_state_dict(self.best_state)

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, mode={self.mode!r})")


# ------------------------------------------------------------------------------- fit


class _Reporter:
    """Progress: one line per epoch on stdout; while an epoch runs, a tqdm bar on stderr
    (batches, running loss, samples/s) when stderr is a terminal and tqdm is installed."""

    def __init__(self, enabled, epochs):
        self.enabled, self.epochs, self.tqdm = enabled, epochs, None
        if enabled and sys.stderr.isatty():
            try:
                from tqdm.auto import tqdm
                self.tqdm = tqdm
            except ImportError:
                pass
        self.width = len(str(epochs))

    def bar(self, epoch, batches):
        if self.tqdm is None:
            return None
        # the bar goes away when the epoch ends; the epoch's line replaces it
        return self.tqdm(total=batches, desc=f"epoch {epoch:>{self.width}}/{self.epochs}", unit="batch",
                         file=sys.stderr, leave=False, dynamic_ncols=True)

    def end_epoch(self, bar, epoch, record, best):
        if bar is not None:
            bar.close()
        if not self.enabled:
            return
        parts = [f"{k} {v:.4f}" for k, v in record.items() if k not in ("lr", "time")]
        parts.append(f"lr {record['lr']:.2e}")
        print(f"epoch {epoch:>{self.width}}/{self.epochs}  " + "  ".join(parts)
              + f"  {record['time']:.1f} s" + ("  *" if best else ""), flush=True)


def fit(model, loss_fn, optimizer, train_loader, val_loader=None, epochs=10, *, scheduler=None,
        early_stopping=None, metrics=("accuracy",), progress=True, monitor=None):
    """Train ``model`` for up to ``epochs`` epochs and return a ``History``.

    Each epoch: the model in training mode runs every batch of ``train_loader``
    (forward, ``loss_fn``, backward, ``optimizer.step()``); then, with ``val_loader``,
    the validation loss and ``metrics`` ('accuracy', or functions ``fn(output, target)``
    giving a batch's mean) in eval mode; then ``scheduler.step()`` (per epoch; a
    ``ReduceLROnPlateau`` gets the monitored value), then ``early_stopping``. A sampler
    with ``set_epoch`` (distributed) is told the epoch first.

    ``monitor``: the value ReduceLROnPlateau watches; default: early_stopping's monitor,
    else 'val_loss' with a val_loader, else 'loss'. ``progress=True`` prints one line per
    epoch ('*' marks a new best) and, while an epoch runs, shows a tqdm bar (batches,
    loss, samples/s) when stderr is a terminal and tqdm is installed; False is silent.
    A non-finite training loss stops training with a RuntimeWarning. With early
    stopping the best epoch's weights are restored at the end. The model is left in
    eval mode."""
    _check_model(model)
    _check_loss(loss_fn)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastnn.optim optimizer, got {type(optimizer).__name__}")
    _batches(train_loader, "train_loader")
    if val_loader is not None:
        _batches(val_loader, "val_loader")
    epochs = check_int(epochs, "epochs", 1)
    progress = check_bool(progress, "progress")
    functions = _metric_functions(metrics)
    if early_stopping is not None and not isinstance(early_stopping, EarlyStopping):
        raise TypeError(f"early_stopping must be an EarlyStopping, got {type(early_stopping).__name__}")
    if scheduler is not None and not hasattr(scheduler, "step"):
        raise TypeError(f"scheduler must be a learning-rate scheduler, got {type(scheduler).__name__}")
    if monitor is None:
        monitor = (early_stopping.monitor if early_stopping is not None
                   else "val_loss" if val_loader is not None else "loss")
    available = ["loss", *functions] + (["val_loss", *("val_" + k for k in functions)] if val_loader else [])
    for who, name in (("monitor", monitor), ("early_stopping.monitor",
                                             early_stopping.monitor if early_stopping else None)):
        if name is not None and name not in available:
            raise ValueError(f"{who} is {name!r}, which fit does not record here; choose one of "
                             f"{available}" + ("" if val_loader else " (val_* needs a val_loader)"))
    if isinstance(scheduler, ReduceLROnPlateau) and scheduler.mode != _default_mode(monitor):
        raise ValueError(f"ReduceLROnPlateau(mode={scheduler.mode!r}) watches {monitor!r}, which improves "
                         f"as it {'falls' if _default_mode(monitor) == 'min' else 'rises'}: pass "
                         f"mode={_default_mode(monitor)!r}")

    history = History()
    history.monitor = early_stopping.monitor if early_stopping else monitor
    if early_stopping is not None:
        early_stopping.reset()
    reporter = _Reporter(progress, epochs)
    sampler = getattr(train_loader, "sampler", None)
    for epoch in range(1, epochs + 1):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch - 1)
        lr = float(optimizer.param_groups[0]["lr"])
        start = time.perf_counter()
        bar = reporter.bar(epoch, len(train_loader)) if hasattr(train_loader, "__len__") else None
        model.train()
        try:
            record = _run(model, loss_fn, train_loader, functions, optimizer, bar)
        except BaseException:
            if bar is not None:
                bar.close()
            raise
        if val_loader is not None:
            with _modes(model, False):
                val = _run(model, loss_fn, val_loader, functions, None)
            record.update({"val_" + k: v for k, v in val.items()})
        record["lr"] = lr
        record["time"] = time.perf_counter() - start
        history.append(record)
        best = early_stopping is not None and early_stopping.improved(record[early_stopping.monitor])
        reporter.end_epoch(bar, epoch, record, best)
        if not math.isfinite(record["loss"]):
            warnings.warn(f"the training loss is {record['loss']} at epoch {epoch}: training stopped "
                          "(lower the learning rate?)", RuntimeWarning, stacklevel=2)
            break
        if scheduler is not None:
            if isinstance(scheduler, ReduceLROnPlateau):
                scheduler.step(record[monitor])
            else:
                scheduler.step()
        if early_stopping is not None and early_stopping.step(record[early_stopping.monitor], model, epoch):
            history.stopped_early = True
            if progress:
                print(f"early stopping: {early_stopping.monitor} has not improved for "
                      f"{early_stopping.patience} epochs", flush=True)
            break
    if early_stopping is not None and early_stopping.restore_best_weights and early_stopping.best_state:
        early_stopping.restore(model)
        history.best_epoch = early_stopping.best_epoch
        if progress:
            print(f"restored the weights of epoch {early_stopping.best_epoch} "
                  f"({early_stopping.monitor} {early_stopping.best:.4f})", flush=True)
    model.eval()
    return history


# -------------------------------------------------------------------- sanity checks


class InitialLossCheck:
    """The result of ``check_initial_loss``: ``loss``, ``expected`` (the loss of a uniform
    guess), ``classes``, ``relative`` ((loss - expected) / expected), ``ok`` (within
    ``rtol``) and a sentence saying how far off it is (``str()``)."""

    def __init__(self, loss, expected, classes, rtol):
        self.loss, self.expected, self.classes, self.rtol = loss, expected, classes, rtol
        self.relative = (loss - expected) / expected
        self.ok = abs(self.relative) <= rtol

    def __str__(self):
        chance = f"log({max(self.classes, 2)}) = {self.expected:.4f}"
        guess = (f"a uniform guess over {self.classes} classes scores {chance}" if self.classes > 1
                 else f"a logit of 0 scores {chance}")
        off = f"{abs(self.relative):.1%} {'above' if self.relative >= 0 else 'below'}"
        text = f"initial loss {self.loss:.4f}; {guess}: {off}"
        if self.ok:
            return text + ": OK"
        if self.relative > 0:
            return (text + ": the initial scores are too large; scale down the last layer's initial "
                    "weights and check that the inputs are standardized")
        return text + ": lower than chance before training; check for labels leaking into the inputs"

    def __repr__(self):
        return (f"InitialLossCheck(loss={self.loss:.4f}, expected={self.expected:.4f}, "
                f"classes={self.classes}, ok={self.ok})")


def check_initial_loss(model, loss_fn, x, y, *, rtol=0.1):
    """The lectures' first sanity check: an untrained classifier should be unsure, so its
    loss should be the loss of a uniform guess, log(C) for C classes with
    CrossEntropyLoss (2.303 for 10), log(2) per output with BCEWithLogitsLoss. Runs one
    forward of x in training mode (as the first step will) on a copy of the model, so
    the model's running statistics and dropout generators do not move. Returns an
    ``InitialLossCheck`` (``print`` it; ``.ok`` is True within ``rtol``)."""
    _check_model(model)
    _check_loss(loss_fn)
    rtol = check_float(rtol, "rtol")
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        kind = "ce"
    elif isinstance(loss_fn, nn.BCEWithLogitsLoss):
        kind = "bce"
    else:
        raise TypeError("check_initial_loss knows the chance level of CrossEntropyLoss and BCEWithLogitsLoss, "
                        f"not {type(loss_fn).__name__}")
    probe = copy.deepcopy(model).train()
    out = probe(x)
    loss = _as_float(copy.deepcopy(loss_fn)(out, y))
    classes = out.shape[1] if kind == "ce" else 1
    expected = math.log(classes) if kind == "ce" else math.log(2)
    return InitialLossCheck(loss, expected, classes, rtol)


class OverfitResult:
    """The result of ``overfit_batch``: ``reached`` (100% training accuracy),
    ``steps`` taken, final ``loss`` and ``accuracy``, ``losses`` per step, ``samples``,
    and the trained copy (``model``)."""

    def __init__(self, reached, steps, losses, accuracy, model, samples):
        self.reached, self.steps, self.losses, self.accuracy = reached, steps, losses, accuracy
        self.model, self.samples, self.loss = model, samples, losses[-1]

    def __str__(self):
        if self.reached:
            return (f"overfit {self.samples} samples: 100% training accuracy after {self.steps} steps "
                    f"(loss {self.loss:.4f})")
        return (f"could not overfit {self.samples} samples: {self.accuracy:.1%} training accuracy after "
                f"{self.steps} steps (loss {self.loss:.4f}); check the model, the loss and the learning rate")

    def __repr__(self):
        return (f"OverfitResult(reached={self.reached}, steps={self.steps}, loss={self.loss:.4g}, "
                f"accuracy={self.accuracy})")


def overfit_batch(model, loss_fn, x, y, *, steps=200, optimizer=None):
    """The lectures' second check: a model that can't reach 100% training accuracy on a
    handful of samples (say 20) has a bug. Trains a copy of the model (the model itself
    is untouched) on x, y for up to ``steps`` full-batch steps in training mode and
    stops at the first step whose outputs classify every sample right. ``optimizer``: a
    function from a parameter list to an optimizer (default
    ``lambda p: optim.Adam(p, lr=1e-3)``). Turn regularization off for it (no weight
    decay, dropout p=0), as the lectures advise. Returns an ``OverfitResult``."""
    from . import optim

    _check_model(model)
    _check_loss(loss_fn)
    steps = check_int(steps, "steps", 1)
    make = optimizer if optimizer is not None else (lambda params: optim.Adam(params, lr=1e-3))
    if not callable(make):
        raise TypeError("optimizer must be a function from parameters to an optimizer, e.g. "
                        "lambda p: optim.SGD(p, lr=0.1)")
    probe = copy.deepcopy(model).train()
    opt = make(list(probe.parameters()))
    losses, acc = [], 0.0
    for step in range(1, steps + 1):
        opt.zero_grad()
        out = probe(x)
        losses.append(_as_float(loss_fn(out, y)))
        acc = _as_float(_correct(out, y)) / x.shape[0]
        if acc == 1.0:
            return OverfitResult(True, step, losses, acc, probe, x.shape[0])
        probe.backward(loss_fn.backward(), input_grad=False)
        opt.step()
    return OverfitResult(False, steps, losses, acc, probe, x.shape[0])


class LRFinderResult:
    """The learning-rate sweep: ``lrs``, ``losses`` (per step), ``smoothed`` (a centred
    moving average over about a tenth of the sweep) and ``suggestion``: the learning
    rate where the smoothed loss falls fastest (per factor of lr) before its minimum.
    ``plot(path)``."""

    def __init__(self, lrs, losses, smoothed, suggestion):
        self.lrs, self.losses, self.smoothed, self.suggestion = lrs, losses, smoothed, suggestion

    def plot(self, path=None):
        """The smoothed loss against the learning rate (log axis), the suggestion marked;
        returns the matplotlib Figure."""
        Figure = _matplotlib_figure()
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses, color="0.8", label="loss")
        ax.plot(self.lrs, self.smoothed, color="C0", label="smoothed")
        ax.axvline(self.suggestion, color="C3", linestyle="--", label=f"suggestion {self.suggestion:.1e}")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("training loss")
        ax.legend()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig

    def __repr__(self):
        return f"LRFinderResult({len(self.lrs)} steps, suggestion={self.suggestion:.3g})"


def lr_find(model, loss_fn, optimizer, train_loader, *, start=1e-6, end=1.0, steps=100, smooth=0.05,
            diverge=4.0):
    """The learning-rate range test: train copies of the model and optimizer for up to
    ``steps`` batches (cycling through ``train_loader``) while the learning rate grows
    exponentially from ``start`` to ``end``, recording the loss; stop once a running
    average of the loss (weight ``smooth`` for the newest) exceeds ``diverge`` times its
    minimum, or the loss is not finite. The model and optimizer are not changed
    (the loader's shuffling moves on). Returns an ``LRFinderResult`` whose
    ``suggestion`` lies in [start, end]."""
    _check_model(model)
    _check_loss(loss_fn)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a fastnn.optim optimizer, got {type(optimizer).__name__}")
    _batches(train_loader, "train_loader")
    start, end = check_float(start, "start"), check_float(end, "end")
    if not 0 < start < end:
        raise ValueError(f"need 0 < start < end, got start={start}, end={end}")
    steps = check_int(steps, "steps", 5)
    smooth = check_float(smooth, "smooth")
    if not 0 < smooth <= 1:
        raise ValueError(f"smooth must be in (0, 1], got {smooth}")
    diverge = check_float(diverge, "diverge")
    if not diverge > 1:
        raise ValueError(f"diverge must be > 1, got {diverge}")
    probe, opt = copy.deepcopy((model, optimizer))  # one deep copy keeps the optimizer on the copy's parameters
    probe.train()
    schedule = np.geomspace(start, end, steps)
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    batches = iter(train_loader)
    for i, lr in enumerate(schedule):
        try:
            xb, yb = next(batches)
        except StopIteration:
            batches = iter(train_loader)
            xb, yb = next(batches)
        for group in opt.param_groups:
            group["lr"] = float(lr)
        opt.zero_grad()
        loss = _as_float(loss_fn(probe(xb), yb))
        probe.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        if not math.isfinite(loss):
            break
        lrs.append(float(lr))
        losses.append(loss)
        avg = (1 - smooth) * avg + smooth * loss  # a running average to stop on: it can't look ahead
        value = avg / (1 - (1 - smooth) ** (i + 1))  # bias-corrected
        best = min(best, value)
        if value > diverge * best:
            break
    if not lrs:
        raise RuntimeError(f"the loss was not finite at the first learning rate ({start:g})")
    lrs, losses = np.asarray(lrs), np.asarray(losses)
    # The suggestion reads a centred moving average (about a tenth of the sweep): the
    # running average above lags behind the learning rate and would point too high.
    n = len(losses)
    h = max(3, (n // 10) | 1) // 2
    window = np.ones(2 * h + 1)
    centred = np.convolve(losses, window, "same") / np.convolve(np.ones(n), window, "same")
    inner = centred[h:n - h]  # points with a full window
    if inner.size >= 3:
        lowest = int(np.argmin(inner))
        if lowest >= 1:  # the steepest fall before the minimum
            slope = np.gradient(inner[:lowest + 1], np.log(lrs[h:h + lowest + 1]))
            suggestion = lrs[h + int(np.argmin(slope))]
        else:  # the loss only rose: the smallest rate tried
            suggestion = lrs[h]
    else:
        suggestion = lrs[int(np.argmin(losses))]
    return LRFinderResult(lrs, losses, centred, float(suggestion))


# ------------------------------------------------------------- hyperparameter search


class LogUniform:
    """A value between low and high, uniform in log(value): learning rates, weight decay
    (the lectures' advice: search those on a log scale)."""

    def __init__(self, low, high):
        self.low, self.high = check_float(low, "low"), check_float(high, "high")
        if not 0 < self.low < self.high:
            raise ValueError(f"LogUniform needs 0 < low < high, got ({self.low}, {self.high})")

    def sample(self, rng):
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))

    def position(self, value):
        """Where value sits in the range, 0 (low) to 1 (high), on the sampling scale."""
        return (math.log(value) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))

    def from_position(self, t):
        return math.exp(math.log(self.low) + t * (math.log(self.high) - math.log(self.low)))

    def __repr__(self):
        return f"LogUniform({self.low:g}, {self.high:g})"


class Uniform(LogUniform):
    """A value between low and high, uniform: dropout rates, momentum."""

    def __init__(self, low, high):
        self.low, self.high = check_float(low, "low"), check_float(high, "high")
        if not self.low < self.high:
            raise ValueError(f"Uniform needs low < high, got ({self.low}, {self.high})")

    def sample(self, rng):
        return float(rng.uniform(self.low, self.high))

    def position(self, value):
        return (value - self.low) / (self.high - self.low)

    def from_position(self, t):
        return self.low + t * (self.high - self.low)

    def __repr__(self):
        return f"Uniform({self.low:g}, {self.high:g})"


class Choice:
    """One of a list of options, each equally likely: layer widths, activations."""

    def __init__(self, options):
        self.options = list(options)
        if not self.options:
            raise ValueError("Choice needs at least one option")

    def sample(self, rng):
        return self.options[int(rng.integers(len(self.options)))]

    def __repr__(self):
        return f"Choice({self.options!r})"


class BorderWarning(UserWarning):
    """The best value of a hyperparameter lies at the edge of its search range."""


def _check_space(space):
    if not isinstance(space, dict) or not space:
        raise TypeError("space must be a non-empty dict of name -> LogUniform / Uniform / Choice")
    for name, dist in space.items():
        if not isinstance(dist, (LogUniform, Choice)):
            raise TypeError(f"space[{name!r}] must be a LogUniform, Uniform or Choice, got {type(dist).__name__}")


class SearchResults(list):
    """The trials of a ``random_search``, best first: each a dict with ``trial`` (its
    number), the sampled hyperparameters and what ``train_fn`` returned (``metric`` among
    it). ``best`` is the best trial; ``border`` maps each hyperparameter whose best value
    lies in the outer 10% of its range (on its sampling scale) to 'low' or 'high';
    ``table()`` (or ``print``) lays them out."""

    def __init__(self, trials, space, metric, mode):
        super().__init__(trials)
        self.space, self.metric, self.mode = space, metric, mode
        self.border = {}
        if trials and math.isfinite(trials[0][metric]):
            for name, dist in space.items():
                if isinstance(dist, LogUniform):
                    t = dist.position(trials[0][name])
                    if t < 0.1 or t > 0.9:
                        self.border[name] = "low" if t < 0.1 else "high"

    @property
    def best(self):
        return self[0] if self else None

    def table(self):
        names = list(self.space)
        extra = [k for k in (self[0] if self else {}) if k not in names and k not in ("trial", self.metric)]
        columns = ["trial", *names, self.metric, *extra]

        def cell(value):
            if isinstance(value, float):
                return f"{value:.4g}"
            return str(value)

        rows = [[cell(t.get(c, "")) for c in columns] for t in self]
        widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(columns)]
        lines = ["  ".join(c.rjust(w) for c, w in zip(columns, widths))]
        lines += ["  ".join(v.rjust(w) for v, w in zip(r, widths)) for r in rows]
        return "\n".join(lines)

    def __str__(self):
        return self.table()


def random_search(train_fn, space, trials=20, seed=0, *, metric="val_accuracy", mode="auto"):
    """Random search: ``trials`` times, draw a value for each name in ``space`` (a dict
    of ``LogUniform(low, high)``, ``Uniform(low, high)``, ``Choice([...])``) from a
    generator seeded with ``seed`` and call ``train_fn(**values)``. ``train_fn`` returns
    the validation metric (a number), a dict holding ``metric``, or a ``History`` (its
    best ``metric`` over the epochs). ``mode``: 'max', 'min' or 'auto' (min for names
    with 'loss'). Returns ``SearchResults`` sorted best first (non-finite results last);
    a ``BorderWarning`` for each numeric hyperparameter whose best value sits in the
    outer 10% of its range (the optimum may lie beyond it: widen that range). The same
    seed draws the same values, so a deterministic train_fn gives the same table."""
    if not callable(train_fn):
        raise TypeError(f"train_fn must be callable, got {type(train_fn).__name__}")
    _check_space(space)
    trials = check_int(trials, "trials", 1)
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a str, got {type(metric).__name__}")
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    mode = _default_mode(metric) if mode == "auto" else mode
    rng = np.random.default_rng(check_int(seed, "seed", 0))
    results = []
    for i in range(trials):
        values = {name: dist.sample(rng) for name, dist in space.items()}
        out = train_fn(**values)
        if isinstance(out, History):
            series = [v for v in out[metric] if math.isfinite(v)] if metric in out else None
            if series is None:
                raise ValueError(f"train_fn's History has no {metric!r}; it has {list(out.keys())}")
            out = {metric: (min if mode == "min" else max)(series) if series else math.nan,
                   "epochs": out.epochs}
        elif isinstance(out, numbers.Real):
            out = {metric: float(out)}
        elif isinstance(out, dict):
            if metric not in out:
                raise ValueError(f"train_fn returned a dict without {metric!r}: {sorted(out)}")
        else:
            raise TypeError(f"train_fn must return a number, a dict or a History, got {type(out).__name__}")
        results.append({"trial": i, **values, **{k: (float(v) if isinstance(v, numbers.Real) else v)
                                                  for k, v in out.items()}})

    def key(t):
        v = t[metric]
        if not math.isfinite(v):
            return (1, 0.0)
        return (0, v if mode == "min" else -v)

    results.sort(key=key)
    found = SearchResults(results, space, metric, mode)
    for name, side in found.border.items():
        dist = space[name]
        edge, direction = ("lower", "downwards") if side == "low" else ("upper", "upwards")
        warnings.warn(f"the best {name} = {found.best[name]:.4g} sits at the {edge} border of its range "
                      f"[{dist.low:g}, {dist.high:g}]: the optimum may lie beyond it; if values there make "
                      f"sense, widen the range {direction} and search again", BorderWarning, stacklevel=2)
    return found


def refine(space, results, top=0.25):
    """Coarse to fine: a narrower space around the best trials. For each numeric
    hyperparameter the new range spans the values of the best ``top`` fraction of the
    trials (at least 3), widened by a quarter of that span on each side (on the sampling
    scale) and kept inside the old range; a ``Choice`` keeps the options those trials
    used. (Where the best value sat at a border, widen that range by hand instead.)"""
    _check_space(space)
    if not isinstance(results, SearchResults) or not results:
        raise TypeError("results must be what random_search returned")
    top = check_float(top, "top")
    if not 0 < top <= 1:
        raise ValueError(f"top must be in (0, 1], got {top}")
    finite = [t for t in results if math.isfinite(t[results.metric])]
    best = finite[:max(3, math.ceil(top * len(finite)))] or list(results[:1])
    new = {}
    for name, dist in space.items():
        values = [t[name] for t in best]
        if isinstance(dist, Choice):
            new[name] = Choice([o for o in dist.options if o in values])
            continue
        pos = [min(max(dist.position(v), 0.0), 1.0) for v in values]
        lo, hi = min(pos), max(pos)
        margin = max((hi - lo) / 4, 0.05)
        lo, hi = max(0.0, lo - margin), min(1.0, hi + margin)
        new[name] = type(dist)(dist.from_position(lo), dist.from_position(hi))
    return new


# ------------------------------------------------------------------------ prediction


class Ensemble:
    """Averages the class probabilities (softmax of the outputs) of several trained
    models, each in eval mode: ``Ensemble([m1, m2, m3])(x)`` gives (N, classes)
    probabilities, ``.predict(x)`` the classes. Models trained from different random
    initializations make different mistakes; their average is usually better than each."""

    def __init__(self, models):
        self.models = list(models)
        if not self.models:
            raise ValueError("Ensemble needs at least one model")
        for i, m in enumerate(self.models):
            if not isinstance(m, nn.Module):
                raise TypeError(f"models[{i}] must be a fastnn.nn.Module, got {type(m).__name__}")

    def __call__(self, x, batch_size=256):
        total = None
        for m in self.models:
            p = predict(m, x, batch_size, probabilities=True)
            total = p if total is None else total + p
        return total / len(self.models)

    predict_proba = __call__

    def predict(self, x, batch_size=256):
        """The class with the highest average probability, (N,)."""
        return self(x, batch_size).argmax(axis=1)

    def __len__(self):
        return len(self.models)

    def __repr__(self):
        return f"Ensemble({len(self.models)} models)"


def mc_predict(model, x, samples=20, *, batch_size=256, softmax=True):
    """Monte-Carlo dropout: ``samples`` forward passes of x with the Dropout layers in
    training mode (a fresh mask each pass) and everything else in eval mode (batch norm
    with its running statistics). Returns ``(mean, std)`` over the passes of the class
    probabilities (``softmax=True``) or of the raw outputs: the mean is the prediction,
    the std a measure of the model's uncertainty. Eval mode's single pass (the weight
    scaling rule: dropout off, nothing rescaled, as inverted dropout trains) is the
    cheap approximation of the same mean. The model's modes are restored; its dropout
    generators move on."""
    _check_model(model)
    if not is_array(x):
        raise TypeError(f"x must be an array, got {type(x).__name__}")
    samples = check_int(samples, "samples", 1)
    batch_size = check_int(batch_size, "batch_size", 1)
    softmax = check_bool(softmax, "softmax")
    xp = array_module(x)
    total = total_sq = None
    with _modes(model, False, dropout=True):
        for _ in range(samples):
            outs = [model(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
            out = xp.concatenate(outs).astype(xp.float64)
            if softmax:
                out = _F.softmax(out)
            total = out if total is None else total + out
            total_sq = out * out if total_sq is None else total_sq + out * out
    mean = total / samples
    var = xp.maximum(total_sq / samples - mean * mean, 0.0)
    return mean.astype(x.dtype), xp.sqrt(var).astype(x.dtype)
