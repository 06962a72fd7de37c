"""The CUDA kernels against the CPU kernels on the same inputs (marker ``cuda``).

Every test here needs CuPy and a CUDA device and is skipped without them; run them with
``python -m pytest -m cuda``. Dropout masks, the activations, PReLU, Maxout and the
optimizer steps must match the CPU bit for bit (the same math headers, no FMA
contraction on either side); batch norm and softmax cross-entropy, whose sums are
ordered differently on the two devices, within float32 or float64 rounding, and bitwise
from one GPU run to the next.
"""

import numpy as np
import pytest

import fastnn
from _gpu import require_cuda
from fastnn import nn, optim

F = fastnn.F

pytestmark = pytest.mark.cuda
cp = require_cuda()  # the whole module needs CuPy and a GPU

FLOATS = [np.float32, np.float64]
RTOL = {np.float32: 2e-5, np.float64: 1e-12}


def gpu(a):
    return cp.asarray(a)


def host(a):
    return cp.asnumpy(a)


def bits(a):
    """An array's bits, for bitwise comparison (NaN payloads included)."""
    a = np.ascontiguousarray(host(a) if isinstance(a, cp.ndarray) else a)
    return a.view(np.uint32 if a.dtype == np.float32 else np.uint64 if a.dtype == np.float64 else a.dtype)


def assert_same_bits(got, want):
    np.testing.assert_array_equal(bits(got), bits(want))


def specials(dtype, n=4099, seed=0):
    """Random values over a wide range, with the special values the math headers handle."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * rng.choice([0.01, 1, 5, 30, 300], n)).astype(dtype)
    x[:12] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1e-40, -1e-40, 88.7, -88.7, 709.0, -745.0, 20.0]
    return x


# ------------------------------------------------------------------ interop


def test_cupy_in_cupy_out_on_the_pool_and_the_current_stream():
    x = gpu(np.linspace(-3, 3, 1000, dtype=np.float32))
    pool = cp.get_default_memory_pool()
    before = pool.used_bytes()
    y = F.relu(x)
    assert isinstance(y, cp.ndarray) and y.device.id == x.device.id
    assert pool.used_bytes() >= before + y.nbytes  # allocated through CuPy's pool
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        z = F.gelu(x)
        w = F.relu(z)  # queued after gelu on the same stream
    stream.synchronize()
    np.testing.assert_array_equal(host(w), F.relu(F.gelu(host(x))))
    assert fastnn._cuda._launch_stream(x) == cp.cuda.get_current_stream().ptr or \
        fastnn._cuda._launch_stream(x) == x.__cuda_array_interface__["stream"]


def test_numpy_mixed_with_cupy_is_a_type_error():
    x = np.ones((4, 3), np.float32)
    with pytest.raises(TypeError, match="same device"):
        F.relu(gpu(x), out=x)
    with pytest.raises(TypeError, match="same device"):
        F.batch_norm_forward(gpu(x), np.ones(3, np.float32), None, None, None)


def test_host_pointer_in_a_device_interface_is_refused():
    x = np.ones(16, np.float32)

    class HostPointer:
        __cuda_array_interface__ = {"shape": (16,), "typestr": "<f4", "data": (x.ctypes.data, False),
                                    "strides": None, "version": 3}
    with pytest.raises(ValueError, match="not device memory"):
        F.relu(HostPointer())


def test_info_lists_the_devices():
    info = fastnn.info()
    assert info["cuda_built"] and info["cuda_devices"] == cp.cuda.runtime.getDeviceCount()
    major, minor = cp.cuda.Device(0).compute_capability[:-1], cp.cuda.Device(0).compute_capability[-1]
    assert f"compute capability {major}.{minor}" in info["gpus"][0]


# ------------------------------------------------------------------ dropout


@pytest.mark.parametrize("n", [1, 7, 8, 127, 128, 129, 1000, 4096 + 5, 300_001])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.999, 1.0])
def test_dropout_mask_is_bit_identical(n, p):
    for seed, offset in ((0, 0), (12345, 7), (2**64 - 1, 2**63 + 11)):
        want = F.dropout_mask(n, p, seed=seed, offset=offset)
        got = F.dropout_mask(n, p, seed=seed, offset=offset, out=cp.empty(((n + 7) // 8,), cp.uint8))
        np.testing.assert_array_equal(host(got), want)


def test_dropout_mask_near_the_counter_carry():
    # block indices crossing 2**32: the counter's high word
    n = 4 * 64
    for offset in (0, 2**32 - 1):
        want = F.dropout_mask(n, 0.3, seed=99, offset=offset)
        np.testing.assert_array_equal(host(F.dropout_mask(n, 0.3, seed=99, offset=offset,
                                                          out=cp.empty(n // 8, cp.uint8))), want)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("n", [5, 1003, 65536 + 3])
def test_dropout_forward_and_backward_match_the_cpu(dtype, n):
    x = specials(dtype, n, seed=n)
    y, mask = F.dropout(x, 0.3, seed=42, offset=9)
    gy, gmask = F.dropout(gpu(x), 0.3, seed=42, offset=9)
    assert_same_bits(gy, y)
    np.testing.assert_array_equal(host(gmask), mask)
    dy = specials(dtype, n, seed=n + 1)
    assert_same_bits(F.dropout_backward(gpu(dy), gmask, 0.3), F.dropout_backward(dy, mask, 0.3))
    assert_same_bits(F.dropout_backward(gpu(dy), None, 0.3, seed=42, offset=9),
                     F.dropout_backward(dy, None, 0.3, seed=42, offset=9))
    # unaligned views (scalar path) and in place
    xs = gpu(x)[1:]
    ys, ms = F.dropout(xs, 0.3, seed=42, offset=9)
    y1, m1 = F.dropout(x[1:].copy(), 0.3, seed=42, offset=9)
    assert_same_bits(ys, y1)
    np.testing.assert_array_equal(host(ms), m1)
    inplace = gpu(x)
    F.dropout(inplace, 0.3, seed=42, offset=9, out=inplace)
    assert_same_bits(inplace, y)


def test_dropout_identity_and_eval_copy_exactly():
    x = gpu(specials(np.float32))
    y, mask = F.dropout(x, 0.0, seed=1)
    assert_same_bits(y, x)
    assert (host(mask)[:-1] == 255).all()
    y, _ = F.dropout(x, 0.7, seed=1, training=False)
    assert_same_bits(y, x)


# ------------------------------------------------------------------ activations

ACTIVATIONS = [("relu", ()), ("leaky_relu", (0.2,)), ("elu", (0.7,)), ("selu", ()), ("gelu", ("none",)),
               ("gelu", ("tanh",)), ("sigmoid", ()), ("tanh", ()), ("silu", ()), ("softplus", (2.0, 15.0))]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("name, args", ACTIVATIONS)
def test_activations_are_bit_identical(dtype, name, args):
    x, dy = specials(dtype), specials(dtype, seed=1)
    fwd, bwd = getattr(F, name), getattr(F, name + "_backward")
    assert_same_bits(fwd(gpu(x), *args), fwd(x, *args))
    assert_same_bits(bwd(gpu(dy), gpu(x), *args), bwd(dy, x, *args))
    # 16-byte packs and the scalar tail: an odd offset forces the scalar path
    assert_same_bits(fwd(gpu(x)[3:], *args), fwd(x[3:].copy(), *args))
    xg = gpu(x)
    fwd(xg, *args, out=xg)
    assert_same_bits(xg, fwd(x, *args))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("fn", ["exp", "expm1", "log1p", "tanh", "erf"])
def test_vector_math_is_bit_identical(dtype, fn):
    x = specials(dtype, 20000, seed=3)
    assert_same_bits(fastnn._cuda._math_eval(fn, gpu(x)), fastnn._cpu._math_eval(fn, x))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(64, 10), (3, 1000), (257, 3), (1, 1)])
def test_softmax_cross_entropy_matches_the_cpu(dtype, shape):
    rng = np.random.default_rng(5)
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    loss, probs = F.softmax_cross_entropy(logits, labels)
    gloss, gprobs = F.softmax_cross_entropy(gpu(logits), gpu(labels))
    np.testing.assert_allclose(host(gprobs), probs, rtol=RTOL[dtype] * 10, atol=1e-30)
    np.testing.assert_allclose(float(gloss), float(loss), rtol=RTOL[dtype] * 10)
    np.testing.assert_allclose(host(F.softmax_cross_entropy_backward(gprobs, gpu(labels.astype(np.int32)))),
                               F.softmax_cross_entropy_backward(probs, labels.astype(np.int32)),
                               rtol=RTOL[dtype] * 10, atol=1e-30)


def test_device_labels_out_of_range():
    logits = gpu(np.zeros((4, 3), np.float32))
    labels = gpu(np.array([0, 2, 3, 1]))
    with pytest.raises(ValueError, match=r"labels\[2\] = 3 is out of range: labels must be in \[0, 3\)"):
        F.softmax_cross_entropy(logits, labels, check_labels=True)
    loss, probs = F.softmax_cross_entropy(logits, labels)  # no wait: the bad row makes the loss NaN
    assert np.isnan(float(loss))
    np.testing.assert_allclose(host(probs), np.full((4, 3), 1 / 3), rtol=1e-6)
    d = host(F.softmax_cross_entropy_backward(probs, labels))
    assert np.isnan(d[2]).all() and np.isfinite(np.delete(d, 2, axis=0)).all()
    with pytest.raises(ValueError, match=r"labels\[0\] = -1"):
        F.softmax_cross_entropy_backward(probs, gpu(np.array([-1, 0, 0, 0], np.int32)), check_labels=True)


# ------------------------------------------------------------------ PReLU, Maxout


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axis, wshape", [((8, 5, 7, 9), 1, 5), ((8, 7, 9, 5), -1, 5), ((100,), 1, 1),
                                                 ((64, 300), 1, 300), ((2, 3, 20000), 1, 1)])
def test_prelu_matches_the_cpu(dtype, shape, axis, wshape):
    rng = np.random.default_rng(6)
    x, dy = specials(dtype, int(np.prod(shape)), 7).reshape(shape), rng.standard_normal(shape).astype(dtype)
    w = rng.uniform(-0.5, 0.5, wshape).astype(dtype)
    assert_same_bits(F.prelu(gpu(x), gpu(w), channel_axis=axis), F.prelu(x, w, channel_axis=axis))
    dx, dw = F.prelu_backward(gpu(dy), gpu(x), gpu(w), channel_axis=axis)
    dx_c, dw_c = F.prelu_backward(dy, x, w, channel_axis=axis)
    assert_same_bits(dx, dx_c)
    np.testing.assert_allclose(host(dw), dw_c, rtol=RTOL[dtype], equal_nan=True)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, pieces, axis", [((16, 12), 3, 1), ((4, 6, 5, 5), 2, 1), ((4, 5, 5, 8), 4, -1)])
def test_maxout_is_bit_identical(dtype, shape, pieces, axis):
    x = specials(dtype, int(np.prod(shape)), 8).reshape(shape)
    x.reshape(-1)[20:30] = 1.0  # ties
    y = F.maxout(x, pieces, channel_axis=axis)
    assert_same_bits(F.maxout(gpu(x), pieces, channel_axis=axis), y)
    dy = np.random.default_rng(9).standard_normal(y.shape).astype(dtype)
    assert_same_bits(F.maxout_backward(gpu(dy), gpu(x), pieces, channel_axis=axis),
                     F.maxout_backward(dy, x, pieces, channel_axis=axis))


# ------------------------------------------------------------------ batch norm

BN_SHAPES = [((8, 16, 12, 12), 1), ((8, 12, 12, 16), -1), ((256, 64), 1), ((4, 3, 20000), 1), ((5000, 3), -1),
             ((2, 7, 3, 3), 1)]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape, axis", BN_SHAPES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_batch_norm_matches_the_cpu(dtype, shape, axis, activation):
    rng = np.random.default_rng(10)
    c = shape[axis]
    x = (rng.standard_normal(shape) * 3 + 100).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    w, b = rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)
    grm, grv = gpu(rm), gpu(rv)
    kw = dict(channel_axis=axis, activation=activation)
    cpu = F.batch_norm_forward(x, w, b, rm, rv, training=True, **kw)
    out = F.batch_norm_forward(gpu(x), gpu(w), gpu(b), grm, grv, training=True, **kw)
    tol = dict(rtol=RTOL[dtype] * 5, atol=RTOL[dtype] * 5)
    for got, want in zip(out, cpu):
        np.testing.assert_allclose(host(got), want, **tol)
    np.testing.assert_allclose(host(grm), rm, **tol)  # updated on the device
    np.testing.assert_allclose(host(grv), rv, **tol)
    again = F.batch_norm_forward(gpu(x), gpu(w), gpu(b), None, None, training=True, **kw)
    assert_same_bits(again.y, out.y)  # the same bits every run
    y_arg = dict(y=cpu.y) if activation else {}
    gy_arg = dict(y=out.y) if activation else {}
    for training in (True, False):
        back = F.batch_norm_backward(dy, x, w, cpu.mean, cpu.invstd, training=training, **kw, **y_arg)
        gback = F.batch_norm_backward(gpu(dy), gpu(x), gpu(w), out.mean, out.invstd, training=training, **kw, **gy_arg)
        for got, want in zip(gback, back):
            np.testing.assert_allclose(host(got), want, rtol=RTOL[dtype] * 50, atol=RTOL[dtype] * 50)
    ev = F.batch_norm_forward(x, w, None, rm, rv, training=False, **kw)
    gev = F.batch_norm_forward(gpu(x), gpu(w), None, gpu(rm), gpu(rv), training=False, **kw)
    for got, want in zip(gev, ev):
        np.testing.assert_allclose(host(got), want, **tol)


def test_batch_norm_constant_channel_is_exactly_zero():
    x = gpu(np.full((4, 3, 5, 5), 1e4, np.float32))
    y = F.batch_norm_forward(x, None, None, None, None).y
    assert not host(y).any()


# ------------------------------------------------------------------ optimizers

OPTIMIZERS = [(optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
              (optim.SGD, dict(lr=0.05)),
              (optim.Adagrad, dict(lr=0.05, lr_decay=1e-3, weight_decay=1e-3)),
              (optim.RMSprop, dict(lr=1e-3, momentum=0.5, centered=True, weight_decay=1e-3)),
              (optim.Adagrad, dict(lr=0.05, initial_accumulator_value=0.1)),
              (optim.Adam, dict(lr=1e-3, amsgrad=True, weight_decay=1e-3)),
              (optim.AdamW, dict(lr=1e-3, maximize=True)),
              (optim.Adadelta, dict(lr=0.5, weight_decay=1e-3))]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("cls, kw", OPTIMIZERS)
def test_optimizers_over_200_steps_are_bit_identical(dtype, cls, kw):
    rng = np.random.default_rng(11)
    shapes = [(300, 70), (5,), (0,), (70000,), (3, 3)] + [(17,)] * 30  # many tensors: several launches
    init = [rng.standard_normal(s).astype(dtype) for s in shapes]
    cpu_params = [nn.Parameter(a.copy()) for a in init]
    gpu_params = [nn.Parameter(gpu(a)) for a in init]
    cpu_opt, gpu_opt = cls(cpu_params, **kw), cls(gpu_params, **kw)
    for step in range(200):
        for pc, pg in zip(cpu_params, gpu_params):
            g = rng.standard_normal(pc.shape).astype(dtype)
            pc.grad, pg.grad = g, gpu(g)
        cpu_opt.step()
        gpu_opt.step()
    for pc, pg in zip(cpu_params, gpu_params):
        assert_same_bits(pg.data, pc.data)


def test_optimizer_skips_a_non_finite_step_through_a_device_flag():
    p = nn.Parameter(gpu(np.ones(1000, np.float32)))
    opt = optim.Adam([p], lr=0.1, skip_if_nonfinite=True)
    g = np.ones(1000, np.float32)
    g[500] = np.inf
    p.grad = gpu(g)
    assert not opt.step()
    assert (host(p.data) == 1).all() and not opt.state.get(p)
    p.grad = gpu(np.ones(1000, np.float32))
    assert opt.step() and (host(p.data) < 1).all()


def test_a_non_finite_gradient_in_a_later_group_moves_no_group():
    """Every group's update kernel reads the one device flag: nothing is written in any
    group, and no step count moves."""
    a, b = nn.Parameter(gpu(np.ones(64, np.float32))), nn.Parameter(gpu(np.ones(5, np.float64)))
    opt = optim.Adam([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, skip_if_nonfinite=True)
    a.grad, b.grad = gpu(np.ones(64, np.float32)), gpu(np.ones(5))
    assert opt.step() and opt.state[a]["step"] == opt.state[b]["step"] == 1
    before = [host(a.data), host(b.data), host(opt.state[a]["exp_avg"]), host(opt.state[b]["exp_avg_sq"])]
    g = np.ones(5)
    g[3] = np.nan
    b.grad = gpu(g)
    assert not opt.step()
    after = [host(a.data), host(b.data), host(opt.state[a]["exp_avg"]), host(opt.state[b]["exp_avg_sq"])]
    for x, y in zip(before, after):
        assert_same_bits(x, y)
    assert opt.state[a]["step"] == opt.state[b]["step"] == 1


def test_optim_step_replays_in_a_cuda_graph_with_device_scalars():
    """The step's scalars may live on the device: a captured graph replays with the values
    written there since (here: Adam's bias corrections for steps 1, 2, 3)."""
    hyper = dict(lr=0.01, weight_decay=0.0, maximize=False, grad_scale=1.0, beta1=0.9, beta2=0.999, eps=1e-8,
                 amsgrad=False, decoupled=False)
    rng = np.random.default_rng(12)
    p0, g = rng.standard_normal(1000).astype(np.float32), rng.standard_normal(1000).astype(np.float32)

    def coefs(step):
        return [-(0.01 / (1 - 0.9 ** step))], [(1 - 0.999 ** step) ** 0.5]

    want = nn.Parameter(p0.copy())  # three CPU Adam steps compute the same factors
    cpu_adam = optim.Adam([want], lr=0.01)
    for step in (1, 2, 3):
        want.grad = g
        cpu_adam.step()
    p, m, v, gg = gpu(p0), cp.zeros(1000, cp.float32), cp.zeros(1000, cp.float32), gpu(g)
    neg_dev, bc2_dev = cp.zeros(1, cp.float64), cp.zeros(1, cp.float64)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        fastnn._cuda.optim_step_arrays("adam", [p], [gg], {"exp_avg": [m], "exp_avg_sq": [v]},
                                       {"neg_step_size": neg_dev, "bias_correction2_sqrt": bc2_dev}, [], hyper, False)
        graph = stream.end_capture()
        for step in (1, 2, 3):
            neg, bc2 = coefs(step)
            neg_dev[...] = neg[0]
            bc2_dev[...] = bc2[0]
            graph.launch(stream)
    stream.synchronize()
    assert_same_bits(p, want.data)


# ------------------------------------------------------------------ layers


def _model(seed):
    fastnn.random.seed(seed)
    return nn.Sequential(nn.Linear(20, 64), nn.BatchNorm1d(64), nn.ReLU(), nn.Dropout(0.2, seed=3),
                         nn.Linear(64, 32), nn.GELU(), nn.Linear(32, 5))


def test_a_model_trains_the_same_on_the_gpu():
    rng = np.random.default_rng(13)
    x, t = rng.standard_normal((128, 20)).astype(np.float32), rng.integers(0, 5, 128)
    cpu_model, gpu_model = _model(1), _model(1).to("cuda")
    assert all(p.device.startswith("cuda") for p in gpu_model.parameters())
    loss_fn = nn.CrossEntropyLoss()
    cpu_opt, gpu_opt = optim.Adam(cpu_model.parameters(), lr=1e-2), optim.Adam(gpu_model.parameters(), lr=1e-2)
    xg, tg = gpu(x), gpu(t)
    for _ in range(5):
        for model, opt, xs, ts in ((cpu_model, cpu_opt, x, t), (gpu_model, gpu_opt, xg, tg)):
            opt.zero_grad()
            loss = loss_fn(model(xs), ts)
            model.backward(loss_fn.backward())
            opt.step()
    for (name, pc), (_, pg) in zip(cpu_model.named_parameters(), gpu_model.named_parameters()):
        np.testing.assert_allclose(host(pg.data), pc.data, rtol=1e-3, atol=1e-4, err_msg=name)
    np.testing.assert_allclose(host(gpu_model[1].running_mean), cpu_model[1].running_mean, rtol=1e-3, atol=1e-5)
    back = gpu_model.to("cpu")
    assert all(isinstance(p.data, np.ndarray) for p in back.parameters())
    assert isinstance(back[1].running_var, np.ndarray)
