"""fastnn.train: fit against a hand-computed epoch, early stopping's restored weights
against a saved copy, ReduceLROnPlateau through fit's monitor, progress output, the
sanity checks (initial loss, overfitting 20 samples, lr_find), random search, Ensemble,
Monte-Carlo dropout and the plots."""

import math
import sys

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim
from fastnn.data import DataLoader
from fastnn.optim.lr_scheduler import ReduceLROnPlateau, StepLR
from fastnn.train import (BorderWarning, Choice, EarlyStopping, Ensemble, History, LogUniform, Uniform,
                          accuracy, check_initial_loss, evaluate, fit, lr_find, mc_predict, overfit_batch,
                          plot_history, predict, random_search, refine)


def blobs(n=200, d=10, classes=3, seed=0, noise=1.0, dtype=np.float64):
    """Gaussian clusters: learnable, not perfectly separable."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, d)) * 2
    y = rng.integers(0, classes, n)
    return (centres[y] + noise * rng.standard_normal((n, d))).astype(dtype), y


def mlp(d=10, classes=3, hidden=32, dropout=0.0, dtype=np.float64, seed=0):
    fastnn.random.seed(seed)
    layers = [nn.Linear(d, hidden), nn.BatchNorm1d(hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, classes)).to(dtype)


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def ce(z, y):
    return float(np.mean(np.log(np.exp(z - z.max(1, keepdims=True)).sum(1)) + z.max(1) - z[np.arange(len(y)), y]))


# ------------------------------------------------------------------------------- fit


def test_history_matches_a_hand_computed_epoch():
    """One epoch of SGD on a linear model, batches 4, 4, 2 in order, redone in NumPy."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)), rng.integers(0, 2, 10)
    xv, yv = rng.standard_normal((6, 3)), rng.integers(0, 2, 6)
    fastnn.random.seed(0)
    model = nn.Linear(3, 2).double()
    w, b = model.weight.data.copy(), model.bias.data.copy()
    opt = optim.SGD(model.parameters(), lr=0.5)
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, 4, shuffle=False),
                  DataLoader(xv, yv, 4, shuffle=False), epochs=1, progress=False)
    loss_sum = correct = 0.0
    for i in range(0, 10, 4):
        xb, yb = x[i:i + 4], y[i:i + 4]
        z = xb @ w.T + b
        loss_sum += ce(z, yb) * len(yb)
        correct += np.sum(z.argmax(1) == yb)
        dz = softmax(z)
        dz[np.arange(len(yb)), yb] -= 1
        dz /= len(yb)
        w, b = w - 0.5 * dz.T @ xb, b - 0.5 * dz.sum(0)
    zv = xv @ w.T + b
    assert history.epochs == 1 and len(history) == 1
    assert history["loss"][0] == pytest.approx(loss_sum / 10, rel=1e-12)
    assert history["accuracy"][0] == correct / 10
    assert history["val_loss"][0] == pytest.approx(ce(zv, yv), rel=1e-12)
    assert history["val_accuracy"][0] == np.mean(zv.argmax(1) == yv)
    assert history["lr"] == [0.5] and history["time"][0] > 0
    np.testing.assert_allclose(model.weight.data, w, rtol=1e-12)
    assert not model.training  # fit leaves the model in eval mode
    assert evaluate(model, nn.CrossEntropyLoss(), DataLoader(xv, yv, 4, shuffle=False)) == pytest.approx(
        {"loss": ce(zv, yv), "accuracy": np.mean(zv.argmax(1) == yv)}, rel=1e-12)


def overfitting_run(epochs, early_stopping=None, scheduler=None):
    """A wide MLP at a high learning rate on 60 noisy samples: the validation loss falls,
    then rises as it memorizes the noise. Deterministic: the same call, the same weights."""
    x, y = blobs(60, noise=2.5, seed=1)
    xv, yv = blobs(200, noise=2.5, seed=1)[0][60:], blobs(200, noise=2.5, seed=1)[1][60:]
    model = mlp(hidden=128, seed=3)
    opt = optim.Adam(model.parameters(), lr=0.02)
    sched = scheduler(opt) if scheduler else None
    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, 20, generator=0),
                  DataLoader(xv, yv, 64, shuffle=False), epochs, early_stopping=early_stopping,
                  scheduler=sched, progress=False)
    return model, history


def test_early_stopping_restores_the_best_epochs_weights(tmp_path):
    stopper = EarlyStopping(patience=4)
    model, history = overfitting_run(40, stopper)
    best = int(np.argmin(history["val_loss"])) + 1
    assert history.best_epoch == stopper.best_epoch == best
    assert history.stopped_early and stopper.stopped_epoch == best + 4 == history.epochs < 40
    assert stopper.best == min(history["val_loss"])
    # the same run, stopped by hand after the best epoch, saved: the restored weights equal it
    reference, _ = overfitting_run(best)
    fastnn.save(reference.state_dict(), tmp_path / "best.npz")
    saved = fastnn.load(tmp_path / "best.npz")
    restored = model.state_dict()
    assert set(saved) == set(restored)
    for key in saved:
        np.testing.assert_array_equal(restored[key], saved[key], err_msg=key)
    # and they are not the last epoch's
    last, _ = overfitting_run(history.epochs)
    assert not np.array_equal(last.state_dict()["0.weight"], saved["0.weight"])


def test_early_stopping_on_accuracy_and_without_restoring():
    stopper = EarlyStopping(patience=3, monitor="val_accuracy", restore_best_weights=False)
    assert stopper.mode == "max"
    model, history = overfitting_run(30, stopper)
    best = int(np.argmax(history["val_accuracy"])) + 1  # the first epoch with the highest value
    assert stopper.best_epoch == best and history.best_epoch is None
    assert history.epochs == (best + 3 if history.stopped_early else 30)
    last, _ = overfitting_run(history.epochs)
    np.testing.assert_array_equal(model.state_dict()["0.weight"], last.state_dict()["0.weight"])


def test_reduce_lr_on_plateau_follows_the_monitor():
    _, history = overfitting_run(25, scheduler=lambda opt: ReduceLROnPlateau(opt, factor=0.5, patience=1))
    lrs, val = history["lr"], history["val_loss"]
    best, bad = math.inf, 0
    expected = [0.02]
    for v in val[:-1]:  # torch's rule, redone: halve after more than `patience` bad epochs
        if v < best * (1 - 1e-4):
            best, bad = v, 0
        else:
            bad += 1
        lr = expected[-1]
        if bad > 1:
            lr, bad = lr * 0.5, 0
        expected.append(lr)
    assert lrs == pytest.approx(expected, rel=1e-15)
    assert min(lrs) < 0.02  # it did reduce


def test_fit_argument_checks():
    x, y = blobs(20)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(x, y, 5)
    loss = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match="val_loss.*val_loader"):
        fit(model, loss, opt, loader, epochs=1, early_stopping=EarlyStopping())
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        fit(model, loss, opt, loader, epochs=0)
    with pytest.raises(TypeError, match="progress must be a bool"):
        fit(model, loss, opt, loader, epochs=1, progress=1)
    with pytest.raises(TypeError, match="optimizer"):
        fit(model, loss, "sgd", loader, epochs=1)
    with pytest.raises(TypeError, match="DataLoader"):
        fit(model, loss, opt, (x, y), epochs=1)
    with pytest.raises(ValueError, match="x batches only"):
        fit(model, loss, opt, DataLoader(x, batch_size=5), epochs=1)
    with pytest.raises(ValueError, match="reduction='mean'"):
        fit(model, nn.CrossEntropyLoss(reduction="sum"), opt, loader, epochs=1)
    with pytest.raises(ValueError, match="mode='max'"):
        fit(model, loss, opt, loader, loader, epochs=1, monitor="val_accuracy",
            scheduler=ReduceLROnPlateau(opt))
    with pytest.raises(ValueError, match="unknown metric"):
        fit(model, loss, opt, loader, epochs=1, metrics=("f1",))


def test_fit_custom_metric_and_other_schedulers():
    x, y = blobs(40)
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)

    def top2(out, target):
        return float(np.mean(np.any(np.argsort(out, 1)[:, -2:] == target[:, None], axis=1)))

    history = fit(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, 10), DataLoader(x, y, 40, shuffle=False),
                  epochs=4, metrics=("accuracy", top2), scheduler=StepLR(opt, 2, 0.1), progress=False)
    assert history["lr"] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    model.eval()
    assert history["val_top2"][-1] == pytest.approx(top2(model(x), y))
    assert all(a <= b for a, b in zip(history["val_accuracy"], history["val_top2"]))


def test_fit_stops_on_a_non_finite_loss():
    x, y = blobs(40)
    x[5] = np.inf
    model = mlp()
    with pytest.warns(RuntimeWarning, match="training loss is nan at epoch 1"), np.errstate(all="ignore"):
        history = fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1),
                      DataLoader(x, y, 40), epochs=5, progress=False)
    assert history.epochs == 1


def test_progress_plain_lines_when_stderr_is_not_a_terminal(capsys):
    x, y = blobs(30)
    model = mlp()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(x, y, 10),
        DataLoader(x, y, 30, shuffle=False), epochs=3, early_stopping=EarlyStopping(10))
    out = capsys.readouterr()
    lines = [line for line in out.out.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all("val_loss" in line and "lr 1.00e-01" in line for line in lines)
    assert "restored the weights of epoch" in out.out
    model = mlp()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(x, y, 10), epochs=2,
        progress=False)
    assert capsys.readouterr().out == ""


def test_progress_bar_on_a_terminal(monkeypatch, capsys):
    tqdm_auto = pytest.importorskip("tqdm.auto")
    bars = []

    class Recorder:  # stands in for tqdm: what fit asks the bar to show
        def __init__(self, total, desc, **kwargs):
            self.total, self.desc, self.count, self.postfix, self.closed = total, desc, 0, "", False
            bars.append(self)

        def update(self, k):
            self.count += k

        def set_postfix_str(self, text, refresh=True):
            self.postfix = text

        def close(self):
            self.closed = True

    monkeypatch.setattr(tqdm_auto, "tqdm", Recorder)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    x, y = blobs(30)
    model = mlp()
    fit(model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.1), DataLoader(x, y, 10), epochs=2)
    assert [(b.desc, b.total, b.count, b.closed) for b in bars] == [("epoch 1/2", 3, 3, True),
                                                                   ("epoch 2/2", 3, 3, True)]
    assert all(b.postfix.startswith("loss ") and b.postfix.endswith(" samples/s") for b in bars)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]  # each epoch's line replaces its bar


# ----------------------------------------------------------------------- the plots


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    _, history = overfitting_run(6, EarlyStopping(2))
    fig = history.plot(tmp_path / "curves.png", log_loss=True)
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log" and acc_ax.get_ylabel() == "accuracy"
    lines = [line for line in loss_ax.get_lines() if line.get_label() in ("train", "validation")]
    np.testing.assert_allclose(lines[1].get_ydata(), history["val_loss"])
    fig = plot_history({"a": history, "b": history}, tmp_path / "two.svg")
    assert (tmp_path / "two.svg").stat().st_size > 0 and len(fig.axes[0].get_legend().get_texts()) == 4


def test_plots_say_when_matplotlib_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    history = History()
    history.append({"loss": 1.0})
    with pytest.raises(ImportError, match=r"matplotlib.*fastnn\[examples\]"):
        history.plot()


# -------------------------------------------------------------------- sanity checks


def test_check_initial_loss_is_log_classes_for_a_fresh_model():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((256, 64)).astype(np.float32), rng.integers(0, 10, 256)
    fastnn.random.seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.BatchNorm1d(128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    running = model[1].running_mean.copy()
    generator = model[3].generator.get_state()
    check = check_initial_loss(model, nn.CrossEntropyLoss(), x, y)
    assert check.expected == pytest.approx(math.log(10)) and check.classes == 10
    assert abs(check.loss - math.log(10)) < 0.1 * math.log(10) and check.ok
    assert "log(10) = 2.3026" in str(check) and str(check).endswith("OK")
    # the model did not move: running statistics, dropout generator, mode
    np.testing.assert_array_equal(model[1].running_mean, running)
    assert model[3].generator.get_state() == generator and model.training
    model[4].weight.data *= 100  # over-confident scores
    bad = check_initial_loss(model, nn.CrossEntropyLoss(), x, y)
    assert not bad.ok and bad.loss > 3 * math.log(10) and "too large" in str(bad)
    with pytest.raises(TypeError, match="chance level"):
        check_initial_loss(model, nn.MSELoss(), x, np.zeros((256, 10), np.float32))


def test_overfit_batch_reaches_100_percent_on_20_samples():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 30)).astype(np.float32), rng.integers(0, 10, 20)  # random labels
    fastnn.random.seed(1)
    model = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 10))
    weights = model[0].weight.data.copy()
    result = overfit_batch(model, nn.CrossEntropyLoss(), x, y, steps=300)
    assert result.reached and result.accuracy == 1.0 and result.steps < 300
    assert np.all(result.model(x).argmax(1) == y)  # the trained copy classifies all 20
    assert result.losses[-1] < result.losses[0]
    np.testing.assert_array_equal(model[0].weight.data, weights)  # the model itself is untouched
    assert "100% training accuracy" in str(result)
    tiny = overfit_batch(model, nn.CrossEntropyLoss(), x, y, steps=2,
                         optimizer=lambda p: optim.SGD(p, lr=1e-6))
    assert not tiny.reached and tiny.steps == 2 and "could not overfit" in str(tiny)


def test_lr_find_suggests_a_rate_inside_its_range_and_changes_nothing(tmp_path):
    x, y = blobs(400, seed=2)
    model = mlp(seed=2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    weights = {k: v.copy() for k, v in model.state_dict().items()}
    result = lr_find(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, 32, generator=0), start=1e-5,
                     end=10.0, steps=80)
    assert 1e-5 <= result.suggestion <= 10.0
    assert 1e-3 < result.suggestion < 3  # where this problem trains well
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 80
    np.testing.assert_allclose(result.lrs, np.geomspace(1e-5, 10.0, 80)[:len(result.lrs)])
    assert len(result.lrs) < 80 and result.losses[-1] > 2 * result.losses.min()  # it diverged and stopped
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, weights[key], err_msg=key)
    assert opt.param_groups[0]["lr"] == 0.1 and not opt.state
    with pytest.raises(ValueError, match="0 < start < end"):
        lr_find(model, nn.CrossEntropyLoss(), opt, DataLoader(x, y, 32), start=1.0, end=0.1)
    pytest.importorskip("matplotlib")
    fig = result.plot(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0 and fig.axes[0].get_xscale() == "log"


# --------------------------------------------------------------- hyperparameter search


def peaked(lr, dropout, width):
    """A stand-in for a training run: best at lr = 1e-3, dropout 0.3, width 64."""
    return {"val_accuracy": 0.9 - 0.05 * (math.log10(lr) + 3) ** 2 - (dropout - 0.3) ** 2
            - 0.01 * (width != 64), "val_loss": float(width)}


SPACE = {"lr": LogUniform(1e-5, 1e-1), "dropout": Uniform(0.0, 0.6), "width": Choice([32, 64, 128])}


def test_random_search_is_reproducible_and_sorted():
    first = random_search(peaked, SPACE, trials=30, seed=4)
    again = random_search(peaked, SPACE, trials=30, seed=4)
    assert list(first) == list(again)
    assert [t["trial"] for t in first] != list(range(30))  # sorted by the metric, not by trial
    values = [t["val_accuracy"] for t in first]
    assert values == sorted(values, reverse=True)
    assert first.best == first[0] and 1e-4 < first.best["lr"] < 1e-2
    assert all(1e-5 <= t["lr"] <= 1e-1 and t["width"] in (32, 64, 128) for t in first)
    lrs = np.log10([t["lr"] for t in first])  # log-uniform: every decade gets trials
    assert all(np.any((lrs >= d) & (lrs < d + 1)) for d in range(-5, -1))
    other = random_search(peaked, SPACE, trials=30, seed=5)
    assert [t["lr"] for t in other] != [t["lr"] for t in first]
    table = first.table().splitlines()
    assert table[0].split() == ["trial", "lr", "dropout", "width", "val_accuracy", "val_loss"]
    assert len(table) == 31 and table[1].split()[0] == str(first.best["trial"])
    assert not first.border
    by_loss = random_search(peaked, SPACE, trials=10, seed=4, metric="val_loss")  # mode 'auto': min
    assert by_loss.best["width"] == 32


def test_random_search_flags_a_border_optimum():
    def grows_with_lr(lr, dropout, width):
        return math.log10(lr) - (dropout - 0.3) ** 2  # the higher the lr the better: beyond 1e-1

    with pytest.warns(BorderWarning, match=r"best lr = .* upper border .*1e-05, 0.1"):
        results = random_search(grows_with_lr, SPACE, trials=40, seed=0)
    assert results.border == {"lr": "high"}
    assert LogUniform(1e-5, 1e-1).position(results.best["lr"]) > 0.9


def test_refine_narrows_around_the_best_trials():
    results = random_search(peaked, SPACE, trials=40, seed=1)
    narrow = refine(SPACE, results)
    assert isinstance(narrow["lr"], LogUniform) and isinstance(narrow["dropout"], Uniform)
    assert 1e-5 <= narrow["lr"].low < results.best["lr"] < narrow["lr"].high <= 1e-1
    assert math.log(narrow["lr"].high / narrow["lr"].low) < math.log(1e-1 / 1e-5)
    assert 0 <= narrow["dropout"].low <= results.best["dropout"] <= narrow["dropout"].high <= 0.6
    assert 64 in narrow["width"].options and set(narrow["width"].options) <= {32, 64, 128}
    second = random_search(peaked, narrow, trials=40, seed=2)
    assert second.best["val_accuracy"] >= results.best["val_accuracy"] - 1e-3


def test_random_search_with_histories_and_bad_returns():
    def train_fn(lr):
        h = History()
        for v in (0.5, 0.8 if lr > 0.5 else 0.6, 0.7):
            h.append({"val_accuracy": v})
        return h

    results = random_search(train_fn, {"lr": Uniform(0.0, 1.0)}, trials=6, seed=0)
    assert results.best["val_accuracy"] == 0.8 and results.best["epochs"] == 3
    with pytest.raises(TypeError, match="number, a dict or a History"):
        random_search(lambda lr: "good", {"lr": Uniform(0, 1)}, trials=1)
    with pytest.raises(ValueError, match="without 'val_accuracy'"):
        random_search(lambda lr: {"acc": 1.0}, {"lr": Uniform(0, 1)}, trials=1)
    with pytest.raises(ValueError, match="0 < low < high"):
        LogUniform(0, 1)


# ------------------------------------------------------------------------ prediction


def test_mc_predict_mean_approaches_the_eval_prediction():
    """With dropout right before the last (linear) layer, the expected output over masks
    is exactly eval mode's (inverted dropout): the Monte-Carlo mean converges to it."""
    x, _ = blobs(50, d=8)
    fastnn.random.seed(0)
    model = nn.Sequential(nn.Linear(8, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(64, 3)).double()
    model.train()
    model(x)  # running statistics away from their initial values
    running = model[1].running_mean.copy()
    model.eval()
    reference = model(x)
    model.train()
    errors = {}
    for samples in (4, 400):
        mean, std = mc_predict(model, x, samples, softmax=False)
        errors[samples] = np.abs(mean - reference).mean()
        assert np.all(std > 0)
    assert errors[400] < errors[4] / 4 and errors[400] < 0.05 * np.abs(reference).mean()
    assert model.training and model[3].training  # modes restored
    np.testing.assert_array_equal(model[1].running_mean, running)  # batch norm ran in eval
    probs, spread = mc_predict(model, x, 10)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-12)
    assert probs.dtype == x.dtype and spread.shape == probs.shape


def test_ensemble_averages_probabilities():
    x, y = blobs(30)
    models = [mlp(seed=s) for s in range(3)]
    for m in models:
        m.train()
    expected = sum(softmax(predict(m, x)) for m in models) / 3
    ensemble = Ensemble(models)
    np.testing.assert_allclose(ensemble(x, batch_size=7), expected, rtol=1e-12)
    np.testing.assert_array_equal(ensemble.predict(x), expected.argmax(1))
    assert all(m.training for m in models)  # predict restores modes
    assert accuracy(np.log(expected), y) == np.mean(expected.argmax(1) == y)
    with pytest.raises(TypeError, match="models\\[1\\]"):
        Ensemble([models[0], "model"])
