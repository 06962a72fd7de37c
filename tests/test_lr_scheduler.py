"""fastnn.optim.lr_scheduler against torch.optim.lr_scheduler: the learning rates of
every group over 100 epochs (exactly equal: both do the same float64 arithmetic),
resuming from a state dict (also through numpy.savez), and the error rules."""

import io

import numpy as np
import pytest

from fastnn import optim
from fastnn.nn import Parameter
from fastnn.optim import lr_scheduler

SCHEDULERS = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("ExponentialLR", dict(gamma=0.97)),
    ("CosineAnnealingLR", dict(T_max=30, eta_min=1e-4)),
    ("CosineAnnealingLR", dict(T_max=100)),
    ("LinearLR", dict(start_factor=0.1, total_iters=10)),
    ("LinearLR", dict(start_factor=0.5, end_factor=0.2, total_iters=40)),
]
IDS = [f"{n}-{i}" for i, (n, _) in enumerate(SCHEDULERS)]


def pair(torch, lrs=(0.1, 0.03)):
    """A fastnn and a torch SGD with one group per lr."""
    fo = optim.SGD([{"params": [Parameter(np.zeros(2))], "lr": lr} for lr in lrs], lr=1.0)
    to = torch.optim.SGD([{"params": [torch.zeros(2, requires_grad=True)], "lr": lr} for lr in lrs],
                         lr=1.0)
    return fo, to


def lrs(opt):
    return [g["lr"] for g in opt.param_groups]


@pytest.mark.parametrize("name,kw", SCHEDULERS, ids=IDS)
def test_matches_torch_over_100_epochs(torch, name, kw):
    fo, to = pair(torch)
    fs, ts = getattr(lr_scheduler, name)(fo, **kw), getattr(torch.optim.lr_scheduler, name)(to, **kw)
    assert fs.base_lrs == ts.base_lrs and fs.last_epoch == ts.last_epoch == 0
    assert [g["initial_lr"] for g in fo.param_groups] == [0.1, 0.03]
    for _ in range(100):
        assert fs.get_last_lr() == ts.get_last_lr()
        assert lrs(fo) == lrs(to)
        fo.step()
        to.step()
        fs.step()
        ts.step()
    assert fs.last_epoch == ts.last_epoch == 100 and lrs(fo) == lrs(to)


@pytest.mark.parametrize("name,kw", SCHEDULERS, ids=IDS)
def test_closed_form_epoch_argument_matches_torch(torch, name, kw):
    fo, to = pair(torch)
    fs, ts = getattr(lr_scheduler, name)(fo, **kw), getattr(torch.optim.lr_scheduler, name)(to, **kw)
    with pytest.warns(UserWarning):  # torch deprecates step(epoch)
        for epoch in (5, 17, 3, 60):
            fs.step(epoch)
            ts.step(epoch)
            assert fs.get_last_lr() == ts.get_last_lr() and fs.last_epoch == epoch


def test_chained_warmup_then_cosine_matches_torch(torch):
    fo, to = pair(torch)
    f1, f2 = lr_scheduler.LinearLR(fo, 0.01, total_iters=5), lr_scheduler.CosineAnnealingLR(fo, 50)
    t1, t2 = (torch.optim.lr_scheduler.LinearLR(to, 0.01, total_iters=5),
              torch.optim.lr_scheduler.CosineAnnealingLR(to, 50))
    for _ in range(100):
        fo.step()
        to.step()
        for s in (f1, f2, t1, t2):
            s.step()
        assert lrs(fo) == lrs(to)


@pytest.mark.parametrize("name,kw", SCHEDULERS, ids=IDS)
def test_resume_from_state_dict_through_npz(torch, name, kw):
    fo, _ = pair(torch)
    fs = getattr(lr_scheduler, name)(fo, **kw)
    for _ in range(23):
        fs.step()
    buf = io.BytesIO()
    np.savez(buf, **fs.state_dict())
    opt_arrays = optim.state_dict_to_arrays(fo.state_dict())

    fo2, _ = pair(torch, lrs=(9.0, 9.0))
    fo2.load_state_dict(opt_arrays)  # restores lr and initial_lr
    buf.seek(0)
    fs2 = getattr(lr_scheduler, name)(fo2, **kw, last_epoch=22)
    fs2.load_state_dict(np.load(buf, allow_pickle=False))
    assert fs2.last_epoch == 23 and fs2.get_last_lr() == fs.get_last_lr()
    for _ in range(30):
        fs.step()
        fs2.step()
        assert lrs(fo2) == lrs(fo)


METRICS = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.89, 0.9, 0.9, 0.9, 0.9] * 9 + [0.5] * 10 + [0.9] * 10


@pytest.mark.parametrize("kw", [
    dict(),
    dict(patience=2),
    dict(mode="max", factor=0.5, patience=1, threshold=0.05),
    dict(threshold_mode="abs", threshold=0.01, patience=1, cooldown=3),
    dict(patience=0, factor=0.5, min_lr=[0.01, 0.02]),
    dict(patience=0, factor=0.5, min_lr=0.02, eps=1e-3),
])
def test_reduce_on_plateau_matches_torch(torch, kw):
    fo, to = pair(torch)
    fs = lr_scheduler.ReduceLROnPlateau(fo, **kw)
    ts = torch.optim.lr_scheduler.ReduceLROnPlateau(to, **kw)
    for m in METRICS:
        fs.step(m)
        ts.step(m)
        assert lrs(fo) == lrs(to) and fs.get_last_lr() == ts.get_last_lr()
        assert (fs.num_bad_epochs, fs.cooldown_counter, fs.best) == (ts.num_bad_epochs, ts.cooldown_counter, ts.best)
    assert fs.last_epoch == len(METRICS)


def test_reduce_on_plateau_state_dict_round_trip():
    fo = optim.SGD([Parameter(np.zeros(2))], lr=1.0)
    fs = lr_scheduler.ReduceLROnPlateau(fo, patience=1, mode="max")
    for m in METRICS[:13]:
        fs.step(m)
    buf = io.BytesIO()
    np.savez(buf, **fs.state_dict())
    buf.seek(0)
    fo2 = optim.SGD([Parameter(np.zeros(2))], lr=fo.param_groups[0]["lr"])
    fs2 = lr_scheduler.ReduceLROnPlateau(fo2)
    fs2.load_state_dict(np.load(buf, allow_pickle=False))
    assert fs2.mode == "max" and fs2.best == fs.best and fs2.mode_worse == -np.inf
    for m in METRICS[13:40]:
        fs.step(m)
        fs2.step(m)
        assert lrs(fo2) == lrs(fo)


def test_errors():
    opt = optim.SGD([Parameter(np.zeros(2))], lr=0.1)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(object(), 3)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.ReduceLROnPlateau(object())
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.ExponentialLR(opt, 0.9, last_epoch=4)
    with pytest.raises(ValueError, match="start_factor"):
        lr_scheduler.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="end_factor"):
        lr_scheduler.LinearLR(opt, end_factor=1.5)
    with pytest.raises(ValueError, match="factor"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="mode"):
        lr_scheduler.ReduceLROnPlateau(opt, mode="up")
    with pytest.raises(ValueError, match="threshold mode"):
        lr_scheduler.ReduceLROnPlateau(opt, threshold_mode="pct")
    with pytest.raises(ValueError, match="min_lrs"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2])
    assert opt.param_groups[0]["lr"] == 0.1


def test_scheduler_drives_the_optimizer_step():
    """The lr a scheduler sets is the one the next step uses."""
    p = Parameter(np.zeros(1))
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    moves = []
    for _ in range(6):
        before = p.data.copy()
        p.grad = np.ones(1)
        opt.step()
        moves.append(float(before[0] - p.data[0]))
        sched.step()
    assert moves == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


class Warmup:
    """A callable object: LambdaLR's state dict keeps its attributes (as torch's does)."""

    def __init__(self, steps):
        self.steps = steps

    def __call__(self, epoch):
        return min(1.0, (epoch + 1) / self.steps) * 0.95 ** epoch


@pytest.mark.parametrize("per_group", [False, True])
def test_lambda_lr_matches_torch(torch, per_group):
    fo, to = pair(torch)
    lambdas = [lambda e: 0.9 ** e, Warmup(7)] if per_group else (lambda e: 1 / (1 + 0.1 * e))
    fs, ts = lr_scheduler.LambdaLR(fo, lambdas), torch.optim.lr_scheduler.LambdaLR(to, lambdas)
    for _ in range(60):
        assert lrs(fo) == lrs(to) and fs.get_last_lr() == ts.get_last_lr()
        fo.step()
        to.step()
        fs.step()
        ts.step()
    with pytest.warns(UserWarning):  # torch deprecates step(epoch)
        for epoch in (3, 40):
            fs.step(epoch)
            ts.step(epoch)
            assert lrs(fo) == lrs(to)


def test_lambda_lr_state_dict_through_fastnn_save(torch):
    import fastnn

    fo, _ = pair(torch)
    warm = Warmup(5)
    fs = lr_scheduler.LambdaLR(fo, [lambda e: 0.5 ** e, warm])
    for _ in range(9):
        fs.step()
    state = fs.state_dict()
    assert state["lr_lambdas"] == [None, {"steps": 5}] and "optimizer" not in state
    buf = io.BytesIO()
    fastnn.save({"sched": state, "optim": fo.state_dict()}, buf)
    buf.seek(0)
    ckpt = fastnn.load(buf)
    fo2, _ = pair(torch, lrs=(9.0, 9.0))
    fo2.load_state_dict(ckpt["optim"])
    warm2 = Warmup(100)
    fs2 = lr_scheduler.LambdaLR(fo2, [lambda e: 0.5 ** e, warm2], last_epoch=8)
    fs2.load_state_dict(ckpt["sched"])
    assert warm2.steps == 5 and fs2.last_epoch == 9
    for _ in range(10):
        fs.step()
        fs2.step()
        assert lrs(fo2) == lrs(fo)


def test_lambda_lr_errors():
    opt = optim.SGD([{"params": [Parameter(np.zeros(2))]}, {"params": [Parameter(np.zeros(2))]}], lr=0.1)
    with pytest.raises(ValueError, match="expected 2 lr_lambdas"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0])
    with pytest.raises(TypeError, match=r"lr_lambda\[1\] must be callable"):
        lr_scheduler.LambdaLR(opt, [lambda e: 1.0, 0.5])
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.1]
