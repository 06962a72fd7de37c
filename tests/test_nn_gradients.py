"""Every layer's backward (dx and each parameter's gradient) and every loss's backward
against central finite differences of its forward, in float64: the relative error
||numeric - analytic|| / max(||numeric||, ||analytic||) must be <= 1e-6.

The objective is L = sum(layer(x) * R) for a fixed random R, so backward(R) is dL/dx.
Inputs are drawn away from kinks (ReLU at 0, max-pool ties) by more than the step."""

import numpy as np
import pytest

from fastnn import nn

H = 1e-6
TOL = 1e-6


def rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def numeric_grad(f, array):
    """Central differences of the scalar f() with respect to every element of array (in place)."""
    grad = np.zeros_like(array)
    flat, gflat = array.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        up = f()
        flat[i] = old - H
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * H)
    return grad


def check_layer(layer, x, rng, before_forward=lambda: None):
    """Finite differences of L = sum(layer(x) * R) against layer.backward(R): dx and every
    parameter that requires a gradient."""
    before_forward()
    y = layer(x)
    r = rng.standard_normal(y.shape)

    def objective():
        before_forward()
        return float(np.sum(layer(x) * r))

    layer.zero_grad()
    before_forward()
    layer(x)
    dx = layer.backward(r)
    assert dx.shape == x.shape and dx.dtype == np.float64
    assert rel_err(numeric_grad(objective, x), dx) <= TOL, "dx"
    checked = 0
    for name, p in layer.named_parameters():
        if not p.requires_grad:
            assert p.grad is None
            continue
        analytic = p.grad.copy()
        assert rel_err(numeric_grad(objective, p.data), analytic) <= TOL, name
        checked += 1
    return checked


def away_from_zero(rng, shape, margin=0.05):
    """Normal values with |x| >= margin (ReLU-like kinks are more than the step away)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-12) * (margin + np.abs(x)), x)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def f64(layer):
    return layer.double()


@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 7)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, shape, bias):
    layer = nn.Linear(7, 4, bias=bias, dtype=np.float64)
    assert check_layer(layer, rng.standard_normal(shape), rng) == (2 if bias else 1)


def test_linear_frozen_weight_gets_no_gradient(rng):
    layer = nn.Linear(6, 3, dtype=np.float64)
    layer.weight.requires_grad = False
    assert check_layer(layer, rng.standard_normal((4, 6)), rng) == 1  # the bias only


def test_maxout(rng):
    layer = nn.Maxout(6, 4, pieces=3, dtype=np.float64)
    x = rng.standard_normal((5, 6))
    # pieces of one group far apart, so no finite-difference step changes the winner
    layer.weight.data[...] = rng.standard_normal(layer.weight.shape)
    layer.bias.data[...] = np.tile([0.0, 6.0, 12.0], 4) * rng.permutation(4).repeat(3)[:12] / 4
    assert check_layer(layer, x, rng) == 2


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2),
    dict(padding=1),
    dict(stride=2, padding=(2, 1)),
    dict(stride=(1, 2), padding=1, dilation=2),
    dict(bias=False),
])
def test_conv2d(rng, kw):
    layer = nn.Conv2d(3, 4, (3, 2) if kw.get("dilation") else 3, dtype=np.float64, **kw)
    x = rng.standard_normal((2, 3, 7, 6))
    assert check_layer(layer, x, rng) == (1 if kw.get("bias") is False else 2)


def distinct_values(rng, shape, gap=1e-3):
    """A permutation of widely spaced values: every max-pool window has one clear winner."""
    return rng.permutation(np.arange(np.prod(shape)) * gap * 10).reshape(shape) - 1.0


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1)])
def test_max_pool(rng, kw):
    check_layer(nn.MaxPool2d(**kw), distinct_values(rng, (2, 3, 7, 6)), rng)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=1)])
def test_avg_pool(rng, kw):
    check_layer(nn.AvgPool2d(**kw), rng.standard_normal((2, 3, 7, 6)), rng)


def test_flatten(rng):
    check_layer(nn.Flatten(), rng.standard_normal((3, 2, 4, 5)), rng)
    check_layer(nn.Flatten(0, 1), rng.standard_normal((3, 2, 4)), rng)


@pytest.mark.parametrize("cls,shape,channels_last", [
    (nn.BatchNorm1d, (8, 5), False),
    (nn.BatchNorm1d, (6, 5, 4), False),
    (nn.BatchNorm1d, (6, 4, 5), True),
    (nn.BatchNorm2d, (4, 5, 3, 2), False),
    (nn.BatchNorm2d, (4, 3, 2, 5), True),
])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm(rng, cls, shape, channels_last, training):
    layer = cls(5, channels_last=channels_last, dtype=np.float64)
    layer.weight.data[...] = rng.uniform(0.5, 2.0, 5)
    layer.bias.data[...] = rng.standard_normal(5)
    layer.running_mean[...] = rng.standard_normal(5)
    layer.running_var[...] = rng.uniform(0.5, 2.0, 5)
    layer.train(training)
    assert check_layer(layer, 3 + 2 * rng.standard_normal(shape), rng) == 2


@pytest.mark.parametrize("kw", [dict(affine=False), dict(track_running_stats=False),
                                dict(momentum=None)])
def test_batch_norm_options(rng, kw):
    layer = nn.BatchNorm2d(3, dtype=np.float64, **kw)
    assert check_layer(layer, rng.standard_normal((4, 3, 2, 3)), rng) == (0 if kw.get("affine") is False else 2)


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_fused_relu(rng, training):
    """BatchNorm2d(activation='relu'): x is chosen so that no pre-activation is near 0."""
    layer = nn.BatchNorm2d(3, activation="relu", dtype=np.float64).train(training)
    x = rng.standard_normal((4, 3, 3, 3))
    # find x whose normalized values avoid 0 by a margin (the forward is the check)
    while True:
        pre = nn.BatchNorm2d(3, dtype=np.float64).train(training)(x)
        if np.abs(pre).min() > 0.02:
            break
        x = rng.standard_normal(x.shape)
    assert check_layer(layer, x, rng) == 2


ACTIVATIONS = [
    nn.ReLU(), nn.LeakyReLU(0.2), nn.ELU(1.3), nn.SELU(), nn.GELU(), nn.GELU("tanh"), nn.Sigmoid(),
    nn.Tanh(), nn.SiLU(), nn.Softplus(), nn.Softplus(beta=2.0, threshold=1.5),
]


@pytest.mark.parametrize("layer", ACTIVATIONS, ids=repr)
def test_activations(rng, layer):
    x = away_from_zero(rng, (4, 6))
    if isinstance(layer, nn.Softplus):  # away from the threshold switch too
        x = np.where(np.abs(layer.beta * x - layer.threshold) < 0.05, x + 0.1, x)
    check_layer(layer, x, rng)


@pytest.mark.parametrize("num_parameters,shape", [(1, (5, 4)), (1, (7,)), (3, (4, 3, 2, 2))])
def test_prelu(rng, num_parameters, shape):
    layer = nn.PReLU(num_parameters, dtype=np.float64)
    layer.weight.data[...] = rng.uniform(-0.5, 0.5, num_parameters)
    assert check_layer(layer, away_from_zero(rng, shape), rng) == 1


@pytest.mark.parametrize("keep_mask", [True, False])
def test_dropout(rng, keep_mask):
    layer = nn.Dropout(0.4, keep_mask=keep_mask, seed=9)
    state = layer.generator.get_state()
    check_layer(layer, rng.standard_normal((6, 7)), rng, lambda: layer.generator.set_state(state))


def test_sequential_with_fused_batch_norm_relu(rng):
    # no bias before a training-mode batch norm: its gradient is exactly 0 (the batch
    # mean cancels it), which a relative error can't judge
    model = nn.Sequential(nn.Linear(5, 6, bias=False), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3),
                          nn.Tanh()).double()
    x = rng.standard_normal((7, 5))
    assert check_layer(model, x, rng) == 5


def test_cnn_block(rng):
    model = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3), nn.LeakyReLU(0.1),
                          nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12, 2)).double()
    assert check_layer(model, rng.standard_normal((3, 2, 4, 4)), rng) == 5


# ---------------------------------------------------------------------------- losses

def check_loss(loss, x, target, rng, dloss=None):
    out = loss(x, target)
    if dloss is None and loss.reduction == "none":
        dloss = rng.standard_normal(out.shape)

    def objective():
        value = loss(x, target)
        return float(np.sum(value * dloss)) if dloss is not None else float(value)

    loss(x, target)
    analytic = loss.backward(dloss)
    assert analytic.shape == x.shape
    assert rel_err(numeric_grad(objective, x), analytic) <= TOL


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore", [False, True])
def test_cross_entropy(rng, reduction, label_smoothing, ignore):
    x = rng.standard_normal((6, 5)) * 2
    target = rng.integers(0, 5, 6)
    if ignore:
        target[[1, 4]] = 3 if label_smoothing else -100
    kw = dict(ignore_index=3) if ignore and label_smoothing else {}
    loss = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=label_smoothing, **kw)
    check_loss(loss, x, target, rng)


def test_cross_entropy_scaled_by_dloss(rng):
    check_loss(nn.CrossEntropyLoss(), rng.standard_normal((4, 3)), rng.integers(0, 3, 4), rng, dloss=2.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse(rng, reduction):
    check_loss(nn.MSELoss(reduction=reduction), rng.standard_normal((4, 3)), rng.standard_normal((4, 3)), rng)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits(rng, reduction):
    x = rng.standard_normal((5, 3)) * 3
    check_loss(nn.BCEWithLogitsLoss(reduction=reduction), x, rng.uniform(0, 1, (5, 3)), rng)
