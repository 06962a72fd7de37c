"""fastnn.nn layers against torch.nn (weights copied over with load_state_dict, float64):
forward outputs, input and parameter gradients, running statistics; and what torch
has no twin for (fused BN+ReLU, channels-last, Maxout, Dropout's generator) against
independent references."""

import numpy as np
import pytest

import fastnn
from fastnn import nn


def to_numpy_state(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def run_both(torch, ours, theirs, x, dy=None, rng=None):
    """Forward and backward through both; returns (y, ty, dx, tdx) as NumPy arrays."""
    ours.load_state_dict(to_numpy_state(theirs))
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours(x)
    dy = np.random.default_rng(5).standard_normal(y.shape) if dy is None else dy
    ty.backward(torch.tensor(dy))
    dx = ours.backward(dy)
    return y, ty.detach().numpy(), dx, tx.grad.numpy()


def assert_grads_match(ours, theirs, tol):
    tgrads = {n: p.grad for n, p in theirs.named_parameters()}
    for name, p in ours.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[name].numpy(), rtol=tol, atol=tol, err_msg=name)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def check_vs_torch(torch, ours, theirs, x, tol=1e-12):
    theirs = theirs.double()
    y, ty, dx, tdx = run_both(torch, ours.double(), theirs, x)
    np.testing.assert_allclose(y, ty, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, tdx, rtol=tol, atol=tol)
    assert_grads_match(ours, theirs, tol)


def test_linear_vs_torch(torch, rng):
    check_vs_torch(torch, nn.Linear(7, 5), torch.nn.Linear(7, 5), rng.standard_normal((2, 3, 7)))
    check_vs_torch(torch, nn.Linear(7, 5, bias=False), torch.nn.Linear(7, 5, bias=False),
                   rng.standard_normal((4, 7)))


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=1), dict(stride=(2, 1), padding=(0, 2)),
                                dict(padding=2, dilation=2), dict(bias=False)])
def test_conv2d_vs_torch(torch, rng, kw):
    check_vs_torch(torch, nn.Conv2d(3, 4, 3, **kw), torch.nn.Conv2d(3, 4, 3, **kw),
                   rng.standard_normal((2, 3, 9, 8)))


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(3, 2), stride=(1, 2))])
def test_pools_vs_torch(torch, rng, kw):
    x = rng.standard_normal((2, 3, 9, 8))
    check_vs_torch(torch, nn.MaxPool2d(**kw), torch.nn.MaxPool2d(**kw), x)
    check_vs_torch(torch, nn.AvgPool2d(**kw), torch.nn.AvgPool2d(**kw), x)


def test_max_pool_nan_and_ties(torch):
    x = np.zeros((1, 1, 2, 4))
    x[0, 0, 1, 0] = np.nan
    y = nn.MaxPool2d(2)(x)
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 0
    pool = nn.MaxPool2d(2)
    pool(np.ones((1, 1, 2, 2)))
    dx = pool.backward(np.ones((1, 1, 1, 1)))
    assert dx.sum() == 1 and dx[0, 0, 0, 0] == 1  # a tie: the first maximum takes it all


def test_flatten_vs_torch(torch, rng):
    check_vs_torch(torch, nn.Flatten(), torch.nn.Flatten(), rng.standard_normal((2, 3, 4, 5)))
    check_vs_torch(torch, nn.Flatten(1, 2), torch.nn.Flatten(1, 2), rng.standard_normal((2, 3, 4, 5)))


@pytest.mark.parametrize("torch_name,args,ours", [
    ("ReLU", (), nn.ReLU()), ("LeakyReLU", (0.2,), nn.LeakyReLU(0.2)), ("ELU", (0.7,), nn.ELU(0.7)),
    ("SELU", (), nn.SELU()), ("GELU", (), nn.GELU()), ("GELU", ("tanh",), nn.GELU("tanh")),
    ("Sigmoid", (), nn.Sigmoid()), ("Tanh", (), nn.Tanh()), ("SiLU", (), nn.SiLU()),
    ("Softplus", (2.0, 3.0), nn.Softplus(2.0, 3.0)),
])
def test_activations_vs_torch(torch, rng, torch_name, args, ours):
    theirs = getattr(torch.nn, torch_name)(*args)
    check_vs_torch(torch, ours, theirs, rng.standard_normal((3, 4, 5)) * 3, tol=1e-12)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("n", [1, 4])
def test_prelu_vs_torch(torch, rng, n):
    theirs = torch.nn.PReLU(n)
    with torch.no_grad():
        theirs.weight.uniform_(-0.5, 0.5)
    check_vs_torch(torch, nn.PReLU(n), theirs, rng.standard_normal((3, 4, 5)))


def test_relu_inplace(rng):
    x = rng.standard_normal((4, 5))
    ref = np.maximum(x, 0)
    layer = nn.ReLU(inplace=True)
    y = layer(x)
    assert y is x and np.array_equal(x, ref)
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), (ref > 0).astype(float))


# ------------------------------------------------------------------------ batch norm

BN_CASES = [("BatchNorm1d", (16, 5)), ("BatchNorm1d", (8, 5, 3)), ("BatchNorm2d", (4, 5, 3, 2))]


@pytest.mark.parametrize("name,shape", BN_CASES)
@pytest.mark.parametrize("kw", [dict(), dict(momentum=None), dict(momentum=0.3, affine=False),
                                dict(track_running_stats=False), dict(bias=False)])
def test_batch_norm_vs_torch_over_steps(torch, rng, name, shape, kw):
    """Five training steps (running statistics and num_batches_tracked follow torch's), then
    eval: outputs, gradients, buffers."""
    ours, theirs = getattr(nn, name)(5, **kw).double(), getattr(torch.nn, name)(5, **kw).double()
    with torch.no_grad():
        for p in theirs.parameters():
            p.uniform_(0.5, 2)
    for step in range(5):
        x = 2 + 3 * rng.standard_normal(shape)
        ours.zero_grad()
        theirs.zero_grad()
        y, ty, dx, tdx = run_both(torch, ours, theirs, x) if step == 0 else _step(torch, ours, theirs, x)
        np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dx, tdx, rtol=1e-10, atol=1e-12)
        assert_grads_match(ours, theirs, 1e-10)
    for key, value in to_numpy_state(theirs).items():
        np.testing.assert_allclose(ours.state_dict()[key], value, rtol=1e-13, err_msg=key)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    ours.eval()
    theirs.eval()
    y, ty, dx, tdx = _step(torch, ours, theirs, rng.standard_normal(shape))
    np.testing.assert_allclose(y, ty, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, tdx, rtol=1e-12, atol=1e-12)
    assert repr(ours) == repr(theirs)


def _step(torch, ours, theirs, x):
    tx = torch.tensor(x, requires_grad=True)
    ty = theirs(tx)
    y = ours(x)
    dy = np.random.default_rng(3).standard_normal(y.shape)
    ty.backward(torch.tensor(dy))
    return y, ty.detach().numpy(), ours.backward(dy), tx.grad.numpy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_relu_is_bitwise_the_two_layers(rng, dtype):
    """BatchNorm2d(activation='relu') and Sequential(BatchNorm2d, ReLU) both take the fused
    kernel; both equal BatchNorm2d then ReLU bit for bit, forward and backward."""
    x = rng.standard_normal((4, 3, 5, 5)).astype(dtype)
    dy = rng.standard_normal(x.shape).astype(dtype)
    plain_bn, plain_relu = nn.BatchNorm2d(3, dtype=dtype), nn.ReLU()
    y_ref = plain_relu(plain_bn(x))
    dx_ref = plain_bn.backward(plain_relu.backward(dy))
    for model in (nn.BatchNorm2d(3, activation="relu", dtype=dtype),
                  nn.Sequential(nn.BatchNorm2d(3, dtype=dtype), nn.ReLU())):
        y = model(x)
        assert np.array_equal(y, y_ref)
        assert np.array_equal(model.backward(dy), dx_ref)
    seq = nn.Sequential(nn.BatchNorm2d(3, dtype=dtype), nn.ReLU())
    seq(x)
    assert seq[0]._saved[5] == "relu" and seq[1]._saved is None  # one fused call, the ReLU layer idle
    assert np.array_equal(seq[0].running_mean, plain_bn.running_mean)


@pytest.mark.parametrize("training", [True, False])
def test_channels_last_matches_nchw(rng, training):
    x = rng.standard_normal((4, 3, 5, 2))
    dy = rng.standard_normal(x.shape)
    a = nn.BatchNorm2d(3, dtype=np.float64).train(training)
    b = nn.BatchNorm2d(3, channels_last=True, dtype=np.float64).train(training)
    b.running_mean[...] = a.running_mean[...] = rng.standard_normal(3)
    y = a(x)
    yl = b(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(yl.transpose(0, 3, 1, 2), y, rtol=1e-13, atol=1e-13)
    dx = a.backward(dy)
    dxl = b.backward(np.ascontiguousarray(dy.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(dxl.transpose(0, 3, 1, 2), dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b.weight.grad, a.weight.grad, rtol=1e-12)
    np.testing.assert_allclose(b.running_mean, a.running_mean, rtol=1e-13)


def test_batch_norm_refused_call_moves_nothing(rng):
    layer = nn.BatchNorm1d(3, momentum=None, dtype=np.float64)
    layer(rng.standard_normal((4, 3)))
    before = {k: v.copy() for k, v in layer.state_dict().items()}
    with pytest.raises(ValueError, match="one value per channel|more than 1 value"):
        layer(rng.standard_normal((1, 3)))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected input of shape \(N, 3\)"):
        layer(rng.standard_normal((4, 2)))
    with pytest.raises(TypeError, match="BatchNorm1d: expected a float64 input"):
        layer(rng.standard_normal((4, 3)).astype(np.float32))
    for k, v in layer.state_dict().items():
        assert np.array_equal(v, before[k]), k


# -------------------------------------------------------------------------- Maxout

def test_maxout_matches_reference(rng):
    layer = nn.Maxout(6, 4, 3, dtype=np.float64)
    x = rng.standard_normal((2, 5, 6))
    z = x @ layer.weight.data.T + layer.bias.data
    ref = z.reshape(2, 5, 4, 3).max(axis=-1)
    np.testing.assert_allclose(layer(x), ref, rtol=1e-15)
    dy = rng.standard_normal(ref.shape)
    winner = z.reshape(2, 5, 4, 3).argmax(-1)
    dz = np.zeros((2, 5, 4, 3))
    np.put_along_axis(dz, winner[..., None], dy[..., None], -1)
    dz = dz.reshape(10, 12)
    np.testing.assert_allclose(layer.backward(dy), (dz @ layer.weight.data).reshape(x.shape), rtol=1e-13)
    np.testing.assert_allclose(layer.weight.grad, dz.T @ x.reshape(10, 6), rtol=1e-13)
    np.testing.assert_allclose(layer.bias.grad, dz.sum(0), rtol=1e-13)


# -------------------------------------------------------------------------- Dropout

def test_dropout_statistics_and_reference_mask():
    x = np.ones(200_000, np.float32)
    layer = nn.Dropout(0.3, seed=11)
    seed, offset = layer.generator.get_state()
    y = layer(x)
    keep = np.unpackbits(fastnn.F.dropout_mask(x.size, 0.3, seed=seed, offset=offset),
                         bitorder="little")[:x.size].astype(bool)
    assert np.array_equal(y, np.where(keep, np.float32(1 / 0.7), 0))
    assert abs(keep.mean() - 0.7) < 0.005
    assert layer.generator.offset == offset + x.size // 4
    dx = layer.backward(np.full_like(x, 2.0))
    assert np.array_equal(dx, np.where(keep, np.float32(2 / 0.7), 0))


def test_dropout_keep_mask_false_gives_the_same_and_keeps_no_mask(rng):
    x = rng.standard_normal((64, 33))
    dy = rng.standard_normal(x.shape)
    a, b = nn.Dropout(0.5, seed=3), nn.Dropout(0.5, keep_mask=False, seed=3)
    assert np.array_equal(a(x), b(x))
    assert b._saved[0] is None and isinstance(b._saved[1], tuple)  # (seed, offset), no mask array
    assert np.array_equal(a.backward(dy), b.backward(dy))
    assert np.array_equal(a(x), b(x))  # both generators moved on alike


def test_dropout_eval_p0_and_seeding(rng):
    x = rng.standard_normal((5, 6))
    layer = nn.Dropout(0.5, seed=1).eval()
    assert layer(x) is x and layer.generator.offset == 0
    assert layer.backward(x) is x
    zero = nn.Dropout(0.0)
    assert zero(x) is x
    fastnn.random.seed(42)
    first = nn.Dropout(0.5)(x)
    fastnn.random.seed(42)
    assert np.array_equal(nn.Dropout(0.5)(x), first)  # seeded from the global generator
    assert not np.array_equal(nn.Dropout(0.5)(x), first)


def test_dropout_refused_input_moves_no_generator():
    layer = nn.Dropout(0.5, seed=2)
    with pytest.raises(TypeError, match="Dropout: expected a float32 or float64 input"):
        layer(np.ones(4, np.int32))
    with pytest.raises(TypeError, match="Dropout: expected an array input"):
        layer([1.0, 2.0])
    assert layer.generator.offset == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_dropout_inplace(rng):
    x = rng.standard_normal((8, 8))
    ref = nn.Dropout(0.5, seed=4)(x.copy())
    y = nn.Dropout(0.5, inplace=True, seed=4)(x)
    assert y is x and np.array_equal(x, ref)


# --------------------------------------------------------------------------- losses

@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("ignore_index", [-100, 2])
def test_cross_entropy_vs_torch(torch, rng, reduction, label_smoothing, ignore_index):
    x = rng.standard_normal((9, 4)) * 3
    target = rng.integers(0, 4, 9)
    target[[0, 5]] = ignore_index if ignore_index >= 0 else -100
    ours = nn.CrossEntropyLoss(reduction=reduction, label_smoothing=label_smoothing, ignore_index=ignore_index)
    theirs = torch.nn.CrossEntropyLoss(reduction=reduction, label_smoothing=label_smoothing,
                                       ignore_index=ignore_index)
    _loss_vs_torch(torch, ours, theirs, x, target, rng)
    assert repr(ours) == repr(theirs) or ignore_index != -100 or label_smoothing or reduction != "mean"


def _loss_vs_torch(torch, ours, theirs, x, target, rng, tol=1e-12):
    tx = torch.tensor(x, requires_grad=True)
    tl = theirs(tx, torch.tensor(target))
    loss = ours(x, target)
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=tol, atol=tol)
    dloss = rng.standard_normal(loss.shape) if loss.ndim else 0.7
    tl.backward(torch.tensor(dloss, dtype=torch.float64))
    np.testing.assert_allclose(ours.backward(dloss), tx.grad.numpy(), rtol=tol, atol=tol)


def test_cross_entropy_float32_and_huge_logits(torch, rng):
    x = (rng.standard_normal((16, 10)) * 1000).astype(np.float32)
    target = rng.integers(0, 10, 16)
    for reduction in ("mean", "sum", "none"):
        ours = nn.CrossEntropyLoss(reduction=reduction)
        theirs = torch.nn.CrossEntropyLoss(reduction=reduction)
        loss = ours(x, target)
        ref = theirs(torch.tensor(x, dtype=torch.float64), torch.tensor(target)).numpy()
        assert np.isfinite(loss).all() and loss.dtype == np.float32
        np.testing.assert_allclose(loss, ref, rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_and_bce_vs_torch(torch, rng, reduction):
    x, t = rng.standard_normal((5, 4)) * 30, rng.uniform(0, 1, (5, 4))
    _loss_vs_torch(torch, nn.MSELoss(reduction=reduction), torch.nn.MSELoss(reduction=reduction), x, t, rng)
    _loss_vs_torch(torch, nn.BCEWithLogitsLoss(reduction=reduction),
                   torch.nn.BCEWithLogitsLoss(reduction=reduction), x, t, rng)


def test_loss_errors(rng):
    ce = nn.CrossEntropyLoss()
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: expected input of shape \(N, C\)"):
        ce(np.zeros(4), np.zeros(4, np.int64))
    with pytest.raises(TypeError, match="CrossEntropyLoss: target must hold class indices"):
        ce(np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match=r"target must have shape \(4,\)"):
        ce(np.zeros((4, 3)), np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="out of range"):
        ce(np.zeros((4, 3)), np.array([0, 1, 3, 0]))
    with pytest.raises(RuntimeError, match="CrossEntropyLoss.backward called before forward"):
        ce.backward()
    mse = nn.MSELoss(reduction="none")
    with pytest.raises(ValueError, match="MSELoss: target has shape"):
        mse(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(TypeError, match="MSELoss: target has dtype float32 but input has float64"):
        mse(np.zeros(3), np.zeros(3, np.float32))
    mse(np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="reduction='none' needs dloss"):
        mse.backward()
    with pytest.raises(ValueError, match="reduction must be"):
        nn.MSELoss(reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        nn.CrossEntropyLoss(label_smoothing=1.5)


# --------------------------------------------------------------------- softmax in F

@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmax_and_log_softmax_vs_torch(torch, rng, dim):
    x = rng.standard_normal((4, 5, 3)) * 50
    tx = torch.tensor(x)
    np.testing.assert_allclose(fastnn.F.softmax(x, dim), torch.softmax(tx, dim).numpy(), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(fastnn.F.log_softmax(x, dim), torch.log_softmax(tx, dim).numpy(), rtol=1e-13)
    x32 = x.astype(np.float32)
    assert fastnn.F.softmax(x32, dim).dtype == np.float32
    np.testing.assert_allclose(fastnn.F.softmax(x32, dim).sum(dim), 1, rtol=1e-6)


def test_softmax_errors():
    with pytest.raises(TypeError, match="x must have dtype float32 or float64"):
        fastnn.F.softmax(np.ones(3, np.int64))
    with pytest.raises(ValueError, match="dim must be in"):
        fastnn.F.log_softmax(np.ones((2, 3)), 2)
    with pytest.raises(TypeError, match="dim must be an int"):
        fastnn.F.softmax(np.ones(3), 0.0)
