"""fastnn.nn.Module: registration, traversal, train/eval, zero_grad, freezing, state dicts
(names as torch's, all-or-nothing loading), dtype casts, repr, Sequential, and the errors
layers raise (naming the layer)."""

from collections import OrderedDict

import numpy as np
import pytest

from fastnn import nn
from fastnn.nn import Parameter


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 3))


def torch_mlp(torch):
    t = torch.nn
    return t.Sequential(t.Linear(4, 8), t.BatchNorm1d(8), t.ReLU(), t.Dropout(0.2), t.Linear(8, 3))


def test_names_and_order_match_torch(torch):
    ours, theirs = mlp(), torch_mlp(torch)
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_buffers()] == [n for n, _ in theirs.named_buffers()]
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]
    assert repr(ours) == repr(theirs)
    for n, p in ours.named_parameters():
        assert p.shape == tuple(dict(theirs.named_parameters())[n].shape)


def test_repr_of_conv_and_nested(torch):
    t = torch.nn
    ours = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Sequential(nn.Flatten(), nn.Linear(8, 2, bias=False)))
    theirs = t.Sequential(t.Conv2d(3, 8, 3, padding=1), t.BatchNorm2d(8), t.ReLU(),
                          t.Sequential(t.Flatten(), t.Linear(8, 2, bias=False)))
    assert repr(ours) == repr(theirs)
    assert repr(nn.Conv2d(3, 8, (3, 1), stride=2, dilation=2, bias=False)) == \
        repr(t.Conv2d(3, 8, (3, 1), stride=2, dilation=2, bias=False))


class Block(nn.Module):
    """A custom module: children and parameters registered by assignment."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 3, dtype=np.float64)
        self.scale = Parameter(np.ones(3))
        self.register_buffer("count", np.zeros((), np.int64))
        self.shared = self.fc  # the same module twice: listed once

    def forward(self, x):
        self._saved = True
        return self.fc(x) * self.scale.data

    def backward(self, dy, *, input_grad=True):
        self._take_saved()
        return self.fc.backward(dy * self.scale.data, input_grad=input_grad)


def test_registration_and_traversal():
    b = Block()
    assert [n for n, _ in b.named_parameters()] == ["scale", "fc.weight", "fc.bias"]
    assert list(b.parameters())[0] is b.scale
    assert [n for n, _ in b.named_children()] == ["fc"]
    assert [type(m).__name__ for m in b.modules()] == ["Block", "Linear"]
    assert list(b.state_dict()) == ["scale", "count", "fc.weight", "fc.bias", "shared.weight", "shared.bias"]
    seen = []
    assert b.apply(lambda m: seen.append(type(m).__name__)) is b
    assert seen == ["Linear", "Block"]  # children first, as torch
    with pytest.raises(TypeError, match="cannot assign ndarray as parameter 'scale'"):
        b.scale = np.ones(3)
    with pytest.raises(TypeError, match="cannot assign int as child module 'fc'"):
        b.fc = 3
    with pytest.raises(TypeError, match="cannot assign list as buffer 'count'"):
        b.count = [1]
    b.scale = None
    assert [n for n, _ in b.named_parameters()] == ["fc.weight", "fc.bias"]
    del b.fc
    assert "fc" not in dict(b.named_children()) and [n for n, _ in b.named_children()] == ["shared"]


def test_train_eval_reach_every_child():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.Dropout(), nn.BatchNorm1d(2)))
    assert all(x.training for x in m.modules())
    assert m.eval() is m and not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    with pytest.raises(TypeError, match="mode must be a bool"):
        m.train("no")


def test_backward_accumulates_and_zero_grad_resets():
    m = nn.Linear(3, 2, dtype=np.float64)
    x, dy = np.ones((4, 3)), np.ones((4, 2))
    m(x)
    m.backward(dy)
    first = m.weight.grad.copy()
    m(x)
    m.backward(dy)
    np.testing.assert_array_equal(m.weight.grad, 2 * first)  # accumulated, as torch
    m.zero_grad(set_to_none=False)
    assert (m.weight.grad == 0).all() and (m.bias.grad == 0).all()
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_requires_grad_false_freezes():
    m = mlp().double()
    assert m[0].requires_grad_(False) is m[0]
    x = np.random.default_rng(0).standard_normal((6, 4))
    m.backward(np.ones_like(m(x)))
    assert m[0].weight.grad is None and m[0].bias.grad is None
    assert m[4].weight.grad is not None and m[1].weight.grad is not None
    with pytest.raises(TypeError, match="requires_grad must be a bool"):
        m.requires_grad_(0)


def test_backward_before_forward_and_twice():
    for layer, x in [(nn.Linear(2, 2), np.ones((1, 2), np.float32)), (nn.ReLU(), np.ones(3)),
                     (nn.BatchNorm1d(2), np.ones((3, 2), np.float32)), (mlp(), np.ones((3, 4), np.float32)),
                     (nn.Conv2d(1, 1, 1), np.ones((1, 1, 2, 2), np.float32)), (nn.Dropout(), np.ones(3))]:
        name = type(layer).__name__
        with pytest.raises(RuntimeError, match=f"{name}.backward called before forward"):
            layer.backward(np.ones(1))
        y = layer(x)
        layer.backward(np.ones_like(y))
        with pytest.raises(RuntimeError, match="twice after one forward"):
            layer.backward(np.ones_like(y))


def test_input_grad_false_skips_dx():
    m = mlp()
    y = m(np.ones((5, 4), np.float32))
    with pytest.raises(TypeError, match="input_grad must be a bool"):
        m.backward(np.ones_like(y), input_grad="no")
    assert m.backward(np.ones_like(y), input_grad=False) is None
    assert m[0].weight.grad is not None


def test_wrong_input_names_the_layer():
    cases = [
        (nn.Linear(4, 2), np.ones((3, 5), np.float32), ValueError, r"Linear: expected input of shape \(\*, 4\)"),
        (nn.Linear(4, 2), np.ones((3, 4)), TypeError, "Linear: expected a float32 input"),
        (nn.Conv2d(3, 2, 3), np.ones((1, 2, 5, 5), np.float32), ValueError,
         r"Conv2d: expected input of shape \(N, 3, H, W\)"),
        (nn.Conv2d(3, 2, 3), np.ones((1, 3, 2, 5), np.float32), ValueError, "Conv2d: the input's spatial size 2"),
        (nn.MaxPool2d(2), np.ones((2, 3)), ValueError, r"MaxPool2d: expected input of shape \(N, C, H, W\)"),
        (nn.BatchNorm2d(3), np.ones((2, 3, 4), np.float32), ValueError, r"BatchNorm2d: expected input of shape"),
        (nn.BatchNorm2d(3, channels_last=True), np.ones((2, 3, 4, 5), np.float32), ValueError,
         r"\(N, H, W, 3\)"),
        (nn.ReLU(), np.ones(3, np.int32), TypeError, "ReLU: expected a float32 or float64 input"),
        (nn.Tanh(), [1.0], TypeError, "Tanh: expected an array input"),
        (nn.PReLU(3), np.ones((2, 4), np.float32), ValueError, r"PReLU: num_parameters=3 needs input of shape"),
        (nn.Maxout(4, 2, 3), np.ones((2, 3), np.float32), ValueError, r"Maxout: expected input of shape \(\*, 4\)"),
        (nn.Flatten(2), np.ones((2, 3), np.float32), ValueError, "Flatten: start_dim=2"),
    ]
    for layer, x, exc, match in cases:
        with pytest.raises(exc, match=match):
            layer(x)
    lin = nn.Linear(2, 3)
    lin(np.ones((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"Linear.backward: expected dy of shape \(4, 3\)"):
        lin.backward(np.ones((4, 2), np.float32))
    with pytest.raises(TypeError, match="Linear.backward: expected dy of dtype float32"):
        lin.backward(np.ones((4, 3)))
    assert lin.backward(np.ones((4, 3), np.float32)).shape == (4, 2)  # refused calls kept the state


def test_constructor_argument_errors():
    with pytest.raises(TypeError, match="in_features must be an int"):
        nn.Linear(2.0, 3)
    with pytest.raises(TypeError, match="bias must be a bool"):
        nn.Linear(2, 3, bias=1)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        nn.Linear(2, 3, dtype=np.int32)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        nn.Conv2d(1, 1, (1, 2, 3))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        nn.Conv2d(1, 1, 3, stride=0)
    with pytest.raises(ValueError, match="padding should be at most half"):
        nn.MaxPool2d(2, padding=2)
    with pytest.raises(ValueError, match="momentum must be in"):
        nn.BatchNorm1d(3, momentum=2)
    with pytest.raises(ValueError, match="activation must be None or 'relu'"):
        nn.BatchNorm1d(3, activation="tanh")
    with pytest.raises(ValueError, match="approximate must be"):
        nn.GELU("fast")
    with pytest.raises(TypeError):
        nn.CrossEntropyLoss(np.ones(3))  # torch's class weights are not supported: no silent mix-up


# ---------------------------------------------------------------------- state dicts

def test_state_dict_is_live_and_round_trips():
    a, b = mlp(), mlp()
    state = a.state_dict()
    assert state["0.weight"] is a[0].weight.data
    assert state["1.num_batches_tracked"].dtype == np.int64 and state["1.num_batches_tracked"].shape == ()
    a.train()
    a(np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32))
    weight_before = b[0].weight.data
    assert b.load_state_dict(a.state_dict()) == ([], [])
    assert b[0].weight.data is weight_before  # copied in place
    for key, value in a.state_dict().items():
        assert np.array_equal(b.state_dict()[key], value)
    x = np.random.default_rng(2).standard_normal((5, 4)).astype(np.float32)
    assert np.array_equal(a.eval()(x), b.eval()(x))


def test_load_state_dict_errors_load_nothing():
    m = mlp()
    good = {k: v.copy() + 1 for k, v in mlp().state_dict().items()}
    before = {k: v.copy() for k, v in m.state_dict().items()}

    def refused(exc, match, state, **kw):
        with pytest.raises(exc, match=match):
            m.load_state_dict(state, **kw)
        for k, v in m.state_dict().items():
            assert np.array_equal(v, before[k]), k

    missing = dict(good)
    del missing["1.running_var"]
    refused(ValueError, r"missing key\(s\) '1.running_var'", missing)
    refused(ValueError, r"unexpected key\(s\) 'extra'", dict(good, extra=np.ones(1)))
    refused(ValueError, r"state_dict\['4.weight'\] has shape \(8, 3\) but the model's has \(3, 8\)",
            dict(good, **{"4.weight": np.ones((8, 3), np.float32)}))
    refused(TypeError, r"state_dict\['4.bias'\] has dtype float64 but the model's has float32",
            dict(good, **{"4.bias": np.ones(3)}))
    refused(TypeError, r"state_dict\['1.num_batches_tracked'\] has dtype int32",
            dict(good, **{"1.num_batches_tracked": np.array(3, np.int32)}))
    refused(TypeError, r"state_dict\['0.bias'\] must be an array, got list",
            dict(good, **{"0.bias": [0.0] * 8}))
    refused(TypeError, "state_dict must be a mapping", [("0.bias", np.ones(8))])
    # strict=False: loads what matches, reports the rest
    result = m.load_state_dict(dict(missing, extra=np.ones(1)), strict=False)
    assert result.missing_keys == ["1.running_var"] and result.unexpected_keys == ["extra"]
    assert np.array_equal(m[0].weight.data, good["0.weight"])
    with pytest.raises(ValueError, match="has shape"):  # a wrong shape is an error even when not strict
        m.load_state_dict({"0.bias": np.ones(2, np.float32)}, strict=False)


def test_load_torch_state_dict(torch):
    theirs = torch_mlp(torch)
    ours = mlp()
    ours.load_state_dict({k: v.numpy() for k, v in theirs.state_dict().items()})
    np.testing.assert_array_equal(ours[0].weight.data, theirs[0].weight.detach().numpy())


# ------------------------------------------------------------------- dtype and device

def test_to_casts_parameters_grads_and_buffers():
    m = mlp()
    m(np.ones((3, 4), np.float32))
    m.backward(np.ones((3, 3), np.float32))
    params = list(m.parameters())
    assert m.double() is m
    assert [p for p in m.parameters()] == params  # the same Parameter objects
    assert all(p.dtype == np.float64 and p.grad.dtype == np.float64 for p in m.parameters())
    assert m[1].running_mean.dtype == np.float64 and m[1].num_batches_tracked.dtype == np.int64
    assert m(np.ones((3, 4))).dtype == np.float64
    m.to("cpu", np.float32)
    assert all(p.dtype == np.float32 for p in m.parameters()) and m[1].running_var.dtype == np.float32
    m.to(dtype="float64")
    assert m[4].bias.dtype == np.float64
    m.float()
    assert m[4].bias.dtype == np.float32
    try:
        import cupy  # noqa: F401
    except ImportError:  # without CuPy: refused, and nothing moved
        with pytest.raises(RuntimeError, match=r"to\('cuda'\) needs CuPy"):
            m.to("cuda", np.float64)
        assert all(isinstance(p.data, np.ndarray) and p.dtype == np.float32 for p in m.parameters())
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        m.to(device="gpu")
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        m.to(np.int64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_factory_argument(dtype):
    layers = [nn.Linear(2, 3, dtype=dtype), nn.Conv2d(1, 2, 3, dtype=dtype), nn.BatchNorm1d(3, dtype=dtype),
              nn.BatchNorm2d(3, dtype=dtype), nn.PReLU(dtype=dtype), nn.Maxout(2, 3, 2, dtype=dtype)]
    for layer in layers:
        assert all(p.dtype == dtype for p in layer.parameters())
        assert all(b.dtype == dtype for n, b in layer.named_buffers() if n != "num_batches_tracked")


def test_default_init_matches_torch_ranges(torch):
    lin, conv = nn.Linear(100, 300), nn.Conv2d(8, 64, 3)
    for layer, fan_in in ((lin, 100), (conv, 72)):
        bound = 1 / np.sqrt(fan_in)
        for p in layer.parameters():
            assert np.abs(p.data).max() <= bound and np.abs(p.data).max() > 0.95 * bound
            assert abs(p.data.std() - bound / np.sqrt(3)) < 0.1 * bound
    assert nn.PReLU(3).weight.data.tolist() == [0.25] * 3


# ------------------------------------------------------------------------ Sequential

def test_sequential_container():
    layers = [nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)]
    s = nn.Sequential(*layers)
    assert len(s) == 3 and s[0] is layers[0] and s[-1] is layers[2] and list(s) == layers
    head = s[1:]
    assert isinstance(head, nn.Sequential) and list(head) == layers[1:]
    assert [n for n, _ in head.named_children()] == ["1", "2"]
    s.append(nn.Sigmoid())
    assert len(s) == 4 and isinstance(s[3], nn.Sigmoid)
    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.Tanh()))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    with pytest.raises(TypeError, match="argument 1 is a int"):
        nn.Sequential(nn.ReLU(), 3)
    relu = nn.ReLU()
    with pytest.raises(ValueError, match="appears more than once"):
        nn.Sequential(nn.Linear(2, 2), relu, nn.Linear(2, 2), relu)(np.ones((1, 2), np.float32))


def test_sequential_backward_runs_in_reverse(rng=np.random.default_rng(3)):
    order = []

    class Tap(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, x):
            self._saved = True
            order.append(("f", self.name))
            return x

        def backward(self, dy):  # no input_grad: a custom module's plain signature works
            self._take_saved()
            order.append(("b", self.name))
            return dy

    s = nn.Sequential(Tap("a"), Tap("b"), Tap("c"))
    x = rng.standard_normal(3)
    assert s.backward(s(x)) is x
    assert order == [("f", "a"), ("f", "b"), ("f", "c"), ("b", "c"), ("b", "b"), ("b", "a")]


def test_deepcopy_and_pickle_make_independent_models():
    """A snapshot of the best model (copy.deepcopy) or a pickled one: same outputs, own
    arrays, and a Dropout generator that continues from the same state."""
    import copy
    import pickle

    m = mlp()
    m(np.ones((4, 4), np.float32))
    for make in (copy.deepcopy, lambda model: pickle.loads(pickle.dumps(model))):
        twin = make(m)
        assert twin[0].weight is not m[0].weight and np.array_equal(twin[0].weight.data, m[0].weight.data)
        assert twin[3].generator.get_state() == m[3].generator.get_state()
        x = np.random.default_rng(0).standard_normal((6, 4)).astype(np.float32)
        assert np.array_equal(twin(x), m(x))  # the same dropout mask too
        twin[0].weight.data += 1
        assert not np.array_equal(twin[0].weight.data, m[0].weight.data)
