"""fastnn.init: each initializer's empirical spread on a large tensor within 2% of its
formula, the fans of conv weights, gains as torch's, orthogonality, reproducible seeding,
errors, and the lectures' experiment: a deep tanh net collapses with 0.01 * randn weights
and keeps its activations with Xavier's."""

import math

import numpy as np
import pytest

import fastnn
from fastnn import init, nn

SHAPE = (1000, 400)  # fan_in 400, fan_out 1000
CONV = (64, 32, 3, 3)  # fan_in 32*3*3 = 288, fan_out 64*3*3 = 576


def rng():
    return np.random.default_rng(2024)


def uniform_std(bound):
    return bound / math.sqrt(3)


@pytest.mark.parametrize("shape", [SHAPE, CONV], ids=["linear", "conv"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spread_matches_formula(shape, dtype):
    fan_in = shape[1] * int(np.prod(shape[2:]))
    fan_out = shape[0] * int(np.prod(shape[2:]))
    gain = init.calculate_gain("relu")
    expected = {
        "xavier_uniform_": uniform_std(math.sqrt(6 / (fan_in + fan_out))),
        "xavier_normal_": math.sqrt(2 / (fan_in + fan_out)),
        "kaiming_uniform_": gain / math.sqrt(fan_in),
        "kaiming_normal_": gain / math.sqrt(fan_in),
        "kaiming_normal_fan_out": gain / math.sqrt(fan_out),
    }
    calls = {
        "xavier_uniform_": lambda w: init.xavier_uniform_(w, generator=rng()),
        "xavier_normal_": lambda w: init.xavier_normal_(w, generator=rng()),
        "kaiming_uniform_": lambda w: init.kaiming_uniform_(w, nonlinearity="relu", generator=rng()),
        "kaiming_normal_": lambda w: init.kaiming_normal_(w, nonlinearity="relu", generator=rng()),
        "kaiming_normal_fan_out": lambda w: init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu",
                                                                 generator=rng()),
    }
    for name, call in calls.items():
        w = np.zeros(shape, dtype)
        assert call(w) is w
        assert abs(w.std() / expected[name] - 1) < 0.02, name
        assert abs(w.mean()) < 0.02 * expected[name] * 10, name
        if "uniform" in name:
            assert np.abs(w).max() <= expected[name] * math.sqrt(3) * (1 + 1e-6), name


def test_normal_uniform_constant():
    w = np.zeros(SHAPE)
    init.normal_(w, mean=2.0, std=0.5, generator=rng())
    assert abs(w.mean() - 2) < 0.01 and abs(w.std() / 0.5 - 1) < 0.02
    init.uniform_(w, -3, 1, generator=rng())
    assert w.min() >= -3 and w.max() < 1 and abs(w.std() / uniform_std(2) - 1) < 0.02
    assert (init.constant_(w, 0.3) == 0.3).all()
    assert (init.zeros_(w) == 0).all() and (init.ones_(w) == 1).all()


def test_calculate_gain_matches_torch(torch):
    for name, param in [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(name, param) == torch.nn.init.calculate_gain(name, param), name
    with pytest.raises(ValueError, match="unsupported nonlinearity 'swish'"):
        init.calculate_gain("swish")


def test_orthogonal():
    for shape in [(30, 50), (50, 30), (8, 4, 3, 3)]:
        w = init.orthogonal_(np.zeros(shape), gain=2.0, generator=rng())
        flat = w.reshape(shape[0], -1)
        small = flat @ flat.T if shape[0] <= flat.shape[1] else flat.T @ flat
        np.testing.assert_allclose(small, 4 * np.eye(small.shape[0]), atol=1e-12)


def test_parameters_and_seeding():
    p = nn.Parameter(np.zeros((20, 30), np.float32))
    assert init.xavier_uniform_(p, generator=np.random.default_rng(5)) is p
    again = init.xavier_uniform_(np.zeros((20, 30), np.float32), generator=np.random.default_rng(5))
    assert np.array_equal(p.data, again)
    fastnn.random.seed(17)
    a = nn.Linear(5, 4).weight.data.copy()
    fastnn.random.seed(17)
    assert np.array_equal(nn.Linear(5, 4).weight.data, a)  # layers draw from fastnn.random
    assert not np.array_equal(nn.Linear(5, 4).weight.data, a)


def test_errors():
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.xavier_uniform_(np.zeros(5))
    with pytest.raises(ValueError, match="mode must be 'fan_in' or 'fan_out'"):
        init.kaiming_normal_(np.zeros((3, 3)), mode="in")
    with pytest.raises(TypeError, match="generator must be a numpy.random.Generator"):
        init.normal_(np.zeros(3), generator=5)
    with pytest.raises(TypeError, match="floating dtype"):
        init.zeros_(np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="tensor must be an array"):
        init.ones_([1.0])
    with pytest.raises(ValueError, match="std must be >= 0"):
        init.normal_(np.zeros(3), std=-1)


def test_deep_tanh_net_collapses_with_small_weights_not_with_xavier():
    """The lectures' experiment: 7 tanh layers of width 4096 on randn(16, 4096). With
    0.01 * randn weights each layer shrinks the activations by ~0.64 (0.01 * sqrt(4096)), so the
    std falls geometrically towards 0 (0.49 -> 0.03 over the 7 layers); with Xavier it stays
    within an order of magnitude of the first layer's (0.63 -> 0.27)."""
    width, depth = 4096, 7
    gen = np.random.default_rng(0)
    x = gen.standard_normal((16, width)).astype(np.float32)
    stds = {}
    for scheme in ("small", "xavier"):
        h, layer_stds = x, []
        for _ in range(depth):
            w = np.empty((width, width), np.float32)
            if scheme == "small":
                w[...] = 0.01 * gen.standard_normal((width, width), dtype=np.float32)
            else:
                init.xavier_normal_(w, generator=gen)
            h = np.tanh(h @ w.T)
            layer_stds.append(float(h.std()))
        stds[scheme] = layer_stds
    small, xavier = stds["small"], stds["xavier"]
    assert all(b < 0.7 * a for a, b in zip(small, small[1:]))  # shrinks geometrically, layer after layer
    assert small[-1] < 0.1 * small[0] and small[-1] < 0.05
    assert xavier[-1] > 0.1 * xavier[0] and xavier[-1] > 0.2
