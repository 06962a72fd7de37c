"""A refused call moves no state (generators, running statistics, the batch count), flags
are bools everywhere, and the result cache holds what it says. (The fuzz test in
test_fuzz_functional.py covers the functional API's whole argument space; these are
the cases written out.)"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastnn
from fastnn import F, nn
from fastnn.nn import Parameter

PAGE = 4096


def rand(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


# =============================================================== dropout's generator


def _bad_dropout_calls(x):
    """Calls of dropout(x, ...) that every one is refused, each for one argument."""
    readonly = np.zeros_like(x)
    readonly.flags.writeable = False
    buf = np.zeros(x.size + 1, x.dtype)
    return [
        ("float16 x", lambda g: F.dropout(x.astype(np.float16), 0.5, generator=g), TypeError, r"\bx\b"),
        ("masked x", lambda g: F.dropout(np.ma.array(x), 0.5, generator=g), TypeError, r"\bx\b"),
        ("list x", lambda g: F.dropout(x.tolist(), 0.5, generator=g), TypeError, r"\bx\b"),
        ("strided x", lambda g: F.dropout(np.repeat(x, 2)[::2], 0.5, generator=g), ValueError, r"\bx\b"),
        ("p > 1", lambda g: F.dropout(x, 1.5, generator=g), ValueError, r"\bp\b"),
        ("p NaN", lambda g: F.dropout(x, float("nan"), generator=g), ValueError, r"\bp\b"),
        ("p str", lambda g: F.dropout(x, "0.5", generator=g), TypeError, r"\bp\b"),
        ("training str", lambda g: F.dropout(x, 0.5, training="no", generator=g), TypeError, "training"),
        ("out dtype", lambda g: F.dropout(x, 0.5, generator=g, out=np.zeros(x.shape, np.float64)),
         TypeError, "out"),
        ("out read-only", lambda g: F.dropout(x, 0.5, generator=g, out=readonly), ValueError, "out"),
        ("out overlapping x", lambda g: F.dropout(buf[:-1], 0.5, generator=g, out=buf[1:]), ValueError, "overlaps"),
        ("mask shape", lambda g: F.dropout(x, 0.5, generator=g, out=(None, np.zeros(3, np.uint8))), ValueError,
         "mask"),
        ("out tuple length", lambda g: F.dropout(x, 0.5, generator=g, out=(None,)), ValueError, "out"),
        ("generator type", lambda g: F.dropout(x, 0.5, generator=np.random.default_rng(0)), TypeError,
         "generator"),
    ]


@pytest.mark.parametrize("case", range(len(_bad_dropout_calls(np.zeros(3, np.float32)))))
@pytest.mark.parametrize("which", ["own", "default"])
def test_refused_dropout_draws_nothing(case, which):
    x = rand((300,))
    name, call, exc, match = _bad_dropout_calls(x)[case]
    g = fastnn.random.Generator(5) if which == "own" else None
    fastnn.random.seed(5)
    gen = g or fastnn.random.default_generator
    with pytest.raises(exc, match=match):
        call(g)
    assert gen.get_state() == (5, 0), name
    # the next mask is the one a fresh generator gives: nothing shifted
    mask = F.dropout(x, 0.5, generator=g).mask
    assert mask.tobytes() == F.dropout_mask(x.size, 0.5, seed=5, offset=0).tobytes()
    assert gen.get_state() == (5, 75)


def test_dropout_names_a_torch_tensor_x_and_draws_nothing(torch):
    g = fastnn.random.Generator(5)
    with pytest.raises(TypeError, match=r"^x must be a numpy.ndarray or a CuPy array, got Tensor"):
        F.dropout(torch.ones(300), 0.5, generator=g)
    assert g.get_state() == (5, 0)


class DeviceArray:
    """Stands in for a CuPy array (only its __cuda_array_interface__; never read)."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = dict(shape=shape, typestr=typestr, data=(0x1000, False), strides=None,
                                             version=3)


@pytest.mark.parametrize("x,exc", [(DeviceArray((300,), "<f2"), TypeError),  # refused by the checks
                                   (DeviceArray((300,)), RuntimeError)])      # checked, then no device here
def test_dropout_on_device_arrays_draws_only_after_its_checks(x, exc):
    if fastnn.info()["cuda_devices"]:
        pytest.skip("a GPU is present: the stand-in pointers would be used")
    g = fastnn.random.Generator(5)
    with pytest.raises(exc):
        F.dropout(x, 0.5, generator=g)
    assert g.get_state() == (5, 0)


def test_dropout_eval_and_explicit_seed_draw_nothing():
    g = fastnn.random.Generator(9)
    x = rand((40,))
    F.dropout(x, 0.5, training=False, generator=g)
    F.dropout(x, 0.5, training=np.False_, generator=g)
    assert g.get_state() == (9, 0)
    F.dropout(x, 0.5, training=np.True_, generator=g)
    assert g.get_state() == (9, 10)


@pytest.mark.parametrize("keep_mask", [True, False])
def test_refused_dropout_layer_draws_nothing(keep_mask):
    layer = nn.Dropout(0.5, inplace=True, keep_mask=keep_mask, seed=3)
    x = rand((8, 50))
    readonly = x.copy()
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        layer(readonly)  # in place over a read-only x: refused by the op's checks
    assert layer.generator.get_state() == (3, 0)
    with pytest.raises(TypeError):
        layer(x.astype(np.float16))
    assert layer.generator.get_state() == (3, 0)
    y = layer(x.copy())
    assert layer.generator.get_state() == (3, 100)
    keep = np.unpackbits(F.dropout_mask(x.size, 0.5, seed=3, offset=0), bitorder="little",
                         count=x.size).astype(bool).reshape(x.shape)
    np.testing.assert_array_equal(y, np.where(keep, x * np.float32(2), 0))
    # the backward regenerates (keep_mask=False) or reads the same keep bits
    dy = rand(x.shape, seed=1)
    np.testing.assert_array_equal(layer.backward(dy), np.where(keep, dy * np.float32(2), 0))


# ======================================================== batch norm's running state


def _bn_args(dtype=np.float32):
    x = rand((6, 3, 4), dtype)
    return dict(x=x, weight=np.ones(3, dtype), bias=np.zeros(3, dtype), running_mean=rand((3,), dtype, 1),
                running_var=np.abs(rand((3,), dtype, 2)) + 1, num_batches_tracked=np.array(4, np.int64))


def _bn_bad_calls():
    """(what, change to the arguments, exception): each refused for one argument."""
    readonly = np.zeros(3, np.float32)
    readonly.flags.writeable = False
    return [
        ("x float16", lambda a: a.update(x=a["x"].astype(np.float16)), TypeError),
        ("x masked", lambda a: a.update(x=np.ma.array(a["x"])), TypeError),
        ("x channels-last view", lambda a: a.update(x=np.moveaxis(np.moveaxis(a["x"], 1, -1).copy(), -1, 1)),
         ValueError),
        ("x one value per channel", lambda a: a.update(x=a["x"][:1, :, :1].copy()), ValueError),
        ("weight shape", lambda a: a.update(weight=np.ones(4, np.float32)), ValueError),
        ("bias float64", lambda a: a.update(bias=np.zeros(3)), TypeError),
        ("running_var missing", lambda a: a.update(running_var=None), ValueError),
        ("running_mean read-only", lambda a: a.update(running_mean=readonly), ValueError),
        ("running_var aliases running_mean", lambda a: a.update(running_var=a["running_mean"]), ValueError),
        ("training str", lambda a: a.update(training="no"), TypeError),
        ("training int", lambda a: a.update(training=1), TypeError),
        ("momentum > 1", lambda a: a.update(momentum=1.5), ValueError),
        ("momentum str", lambda a: a.update(momentum="0.1"), TypeError),
        ("momentum huge int", lambda a: a.update(momentum=10**400), ValueError),
        ("eps 0", lambda a: a.update(eps=0.0), ValueError),
        ("eps inf", lambda a: a.update(eps=float("inf")), ValueError),
        ("channel_axis 2", lambda a: a.update(channel_axis=2), ValueError),
        ("channel_axis 2**70", lambda a: a.update(channel_axis=2**70), ValueError),
        ("activation", lambda a: a.update(activation="gelu"), ValueError),
        ("count int32", lambda a: a.update(num_batches_tracked=np.array(4, np.int32)), TypeError),
        ("count read-only", lambda a: a.update(num_batches_tracked=np.array(4, np.int64)) or
         a["num_batches_tracked"].setflags(write=False), ValueError),
        ("count inside running_mean",
         lambda a: a.update(running_mean=np.zeros(3), running_var=np.ones(3), x=a["x"].astype(np.float64),
                            weight=None, bias=None,
                            num_batches_tracked=None) or a.update(
                                num_batches_tracked=a["running_mean"][:1].view(np.int64).reshape(())), ValueError),
        ("count negative with momentum=None",
         lambda a: a.update(momentum=None, num_batches_tracked=np.array(-1, np.int64)), ValueError),
        ("momentum=None without a count", lambda a: a.update(momentum=None, num_batches_tracked=None), ValueError),
        ("out y overlaps x", lambda a: a.update(out=a["x"].reshape(-1)[1:].copy()), ValueError),
        ("out mean read-only", lambda a: a.update(out=(None, readonly, None)), ValueError),
    ]


@pytest.mark.parametrize("case", range(len(_bn_bad_calls())), ids=[c[0] for c in _bn_bad_calls()])
def test_refused_batch_norm_moves_no_state(case):
    what, change, exc = _bn_bad_calls()[case]
    a = dict(_bn_args(), training=True, momentum=0.1, eps=1e-5, channel_axis=1, activation=None, out=None)
    change(a)
    arrays = {k: v for k, v in a.items() if isinstance(v, np.ndarray)}
    before = {k: v.copy() for k, v in arrays.items()}
    out = a.pop("out")
    with pytest.raises(exc) as info:
        F.batch_norm_forward(a.pop("x"), a.pop("weight"), a.pop("bias"), a.pop("running_mean"),
                             a.pop("running_var"), out=out, **a)
    assert any(word in str(info.value) for word in
               ("x", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps",
                "channel_axis", "activation", "num_batches_tracked", "out")), str(info.value)
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{what}: {k} changed")


def test_batch_norm_count_moves_with_the_running_statistics_only():
    a = _bn_args()
    count = a.pop("num_batches_tracked")
    F.batch_norm_forward(*a.values(), num_batches_tracked=count)
    assert int(count) == 5
    F.batch_norm_forward(*a.values(), training=False, num_batches_tracked=count)
    F.batch_norm_forward(a["x"], None, None, None, None, num_batches_tracked=count)
    assert int(count) == 5
    # momentum=None: the cumulative average, weight 1 / (count + 1)
    rm = a["running_mean"].copy()
    F.batch_norm_forward(*a.values(), momentum=None, num_batches_tracked=count)
    batch_mean = a["x"].astype(np.float64).mean(axis=(0, 2))
    np.testing.assert_allclose(a["running_mean"], rm + (batch_mean - rm) / 6, rtol=1e-6)
    assert int(count) == 6


@pytest.mark.parametrize("layer_cls,shape", [(nn.BatchNorm1d, (5, 3)), (nn.BatchNorm2d, (5, 3, 2, 2))])
def test_refused_batch_norm_layer_moves_no_state(layer_cls, shape):
    layer = layer_cls(3)
    layer(rand(shape))
    state = {k: v.copy() for k, v in layer.state_dict().items()}
    bad = [rand(shape, np.float64), rand(shape[:1] + (4,) + shape[2:]), rand((1, 3) + (1,) * (len(shape) - 2)),
           rand(shape).tolist(), np.ma.array(rand(shape))]
    for x in bad:
        with pytest.raises((TypeError, ValueError)):
            layer(x)
        for k, v in layer.state_dict().items():
            np.testing.assert_array_equal(v, state[k], err_msg=k)
    assert int(layer.num_batches_tracked) == 1


# ===================================================================== flags are bools


@pytest.mark.parametrize("flag", ["no", "", 0, 1, None, 1.0])
def test_functional_flags_refuse_non_bools(flag):
    x = rand((4, 3))
    with pytest.raises(TypeError, match="training must be a bool"):
        F.batch_norm_forward(x, None, None, None, None, training=flag)
    with pytest.raises(TypeError, match="training must be a bool"):
        F.batch_norm_backward(x, x, None, np.zeros(3, np.float32), np.ones(3, np.float32), training=flag)
    with pytest.raises(TypeError, match="training must be a bool"):
        F.dropout(x, 0.5, seed=1, training=flag)


def test_numpy_bools_are_flags():
    x = rand((6, 3))
    rm, rv = np.zeros(3, np.float32), np.ones(3, np.float32)
    for np_flag, flag in [(np.True_, True), (np.False_, False)]:
        a = F.batch_norm_forward(x, None, None, rm.copy(), rv.copy(), training=np_flag)
        b = F.batch_norm_forward(x, None, None, rm.copy(), rv.copy(), training=flag)
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(
            F.batch_norm_backward(x, x, None, a.mean, a.invstd, training=np_flag)[0],
            F.batch_norm_backward(x, x, None, a.mean, a.invstd, training=flag)[0])
        np.testing.assert_array_equal(F.dropout(x, 0.5, seed=3, training=np_flag).y,
                                      F.dropout(x, 0.5, seed=3, training=flag).y)


@pytest.mark.parametrize("make,name", [
    (lambda v: nn.BatchNorm1d(3, affine=v), "affine"),
    (lambda v: nn.BatchNorm1d(3, track_running_stats=v), "track_running_stats"),
    (lambda v: nn.BatchNorm2d(3, bias=v), "bias"),
    (lambda v: nn.BatchNorm2d(3, channels_last=v), "channels_last"),
    (lambda v: nn.Dropout(0.5, inplace=v), "inplace"),
    (lambda v: nn.Dropout(0.5, keep_mask=v), "keep_mask"),
    (lambda v: nn.ReLU(inplace=v), "inplace"),
    (lambda v: nn.Linear(2, 3, bias=v), "bias"),
    (lambda v: nn.Conv2d(1, 2, 3, bias=v), "bias"),
    (lambda v: nn.Linear(2, 3).train(v), "mode"),
    (lambda v: nn.Linear(2, 3).requires_grad_(v), "requires_grad"),
    (lambda v: nn.Linear(2, 3).zero_grad(v), "set_to_none"),
    (lambda v: nn.Linear(2, 3).state_dict(keep_vars=v), "keep_vars"),
    (lambda v: list(nn.Linear(2, 3).parameters(recurse=v)), "recurse"),
    (lambda v: list(nn.Linear(2, 3).buffers(recurse=v)), "recurse"),
    (lambda v: Parameter(np.zeros(2, np.float32), requires_grad=v), "requires_grad"),
    (lambda v: setattr(Parameter(np.zeros(2, np.float32)), "requires_grad", v), "requires_grad"),
])
def test_layer_flags_are_bools(make, name):
    for bad in ("no", "False", 0, 1, None):
        with pytest.raises(TypeError, match=f"{name} must be a bool"):
            make(bad)
    make(np.True_)  # NumPy bools are flags
    make(np.False_)


def test_numpy_bool_flags_are_stored_as_bools():
    bn = nn.BatchNorm1d(3, affine=np.False_, channels_last=np.True_)
    assert bn.affine is False and bn.channels_last is True and bn.weight is None
    drop = nn.Dropout(0.5, inplace=np.True_, keep_mask=np.False_)
    assert drop.inplace is True and drop.keep_mask is False
    model = nn.Sequential(nn.Linear(2, 2)).train(np.False_)
    assert model.training is False and model[0].training is False
    p = Parameter(np.zeros(2, np.float32), requires_grad=np.False_)
    assert p.requires_grad is False


# ============================================================ checks the fuzzer asked for


def test_hyper_parameters_must_fit_float32_data():
    x32, x64 = np.array([-0.0, 0.0, -1.0], np.float32), np.array([-0.0, 0.0, -1.0])
    for call, name in [(lambda x: F.leaky_relu(x, 1e300), "negative_slope"), (lambda x: F.elu(x, -1e300), "alpha"),
                       (lambda x: F.softplus(x, 1e300), "beta"), (lambda x: F.softplus(x, 1e-50), "beta"),
                       (lambda x: F.leaky_relu_backward(x, x, 1e300), "negative_slope")]:
        with pytest.raises(ValueError, match=f"{name} must be .*finite in float32"):
            call(x32)
        assert not np.isnan(call(x64)).any()  # float64 holds these values


def test_numbers_too_large_for_a_float_are_value_errors():
    x = rand((4, 3))
    with pytest.raises(ValueError, match="eps"):
        F.batch_norm_forward(x, None, None, None, None, eps=10**400)
    with pytest.raises(ValueError, match=r"\bp\b"):
        F.dropout(x, 10**400, seed=1)
    with pytest.raises(ValueError, match="negative_slope"):
        F.leaky_relu(x, 10**400)
    with pytest.raises(ValueError, match="negative_slope"):
        nn.LeakyReLU(10**400)
    with pytest.raises(ValueError, match="eps"):
        nn.BatchNorm1d(3, eps=10**400)


def test_out_may_be_a_tuple_of_one():
    x = rand((5,))
    out = np.empty_like(x)
    assert F.relu(x, out=(out,)) is out
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    assert F.gelu_backward(x, x, out=[out]) is out
    mask = np.empty(1, np.uint8)
    assert F.dropout_mask(5, 0.5, seed=1, out=(mask,)) is mask
    with pytest.raises(ValueError, match="out must be an array or a tuple of 1"):
        F.relu(x, out=(out, out))
    p = Parameter(np.empty_like(x))
    y, m = F.dropout(x, 0.0, seed=1, out=[p, None])  # Parameters inside a list, as in a tuple
    assert y is p.data


def test_softmax_of_zero_d_and_empty_arrays():
    assert F.softmax(np.array(3.0)) == 1.0 and F.softmax(np.array(3.0)).shape == ()
    assert F.log_softmax(np.array(3.0, np.float32), dim=0) == 0.0
    for shape, dim in [((0,), 0), ((2, 0), 1), ((0, 3), 1), ((0, 3), 0)]:
        for fn in (F.softmax, F.log_softmax):
            r = fn(np.zeros(shape, np.float32), dim)
            assert r.shape == shape and r.dtype == np.float32
    with pytest.raises(TypeError, match="MaskedArray"):
        F.softmax(np.ma.array([1.0, 2.0]))


# ======================================================================= result cache


def _data(a):
    return a.__array_interface__["data"][0]


def test_cache_counts_page_rounded_blocks_and_reuses_them():
    fastnn.empty_cache()
    n = (1 << 20) // 4 + 1  # float32: 1 MiB + 4 bytes, a block of 257 pages
    x = np.ones(n, np.float32)
    block = -(-x.nbytes // PAGE) * PAGE
    y = F.relu(x)
    address = _data(y)
    assert address % (2 << 20) == 0  # blocks start on a 2 MiB boundary
    del y
    assert fastnn._cpu.cached_bytes() == block
    z = F.relu(x)
    assert _data(z) == address and fastnn._cpu.cached_bytes() == 0  # the same block again
    # a result of another rounded size takes a new block and leaves the cached one
    del z
    w = F.relu(np.ones(n + PAGE, np.float32))
    assert _data(w) != address and fastnn._cpu.cached_bytes() == block
    del w
    assert fastnn._cpu.cached_bytes() == block + -(-(n + PAGE) * 4 // PAGE) * PAGE
    # results under 1 MiB are NumPy's
    small = F.relu(np.ones((1 << 18) - 1, np.float32))
    del small
    assert fastnn._cpu.cached_bytes() == block + -(-(n + PAGE) * 4 // PAGE) * PAGE
    fastnn.empty_cache()
    assert fastnn._cpu.cached_bytes() == 0


def test_cached_results_hold_no_more_memory_than_their_size():
    """20 results of 1 MiB held at once add about 20 MiB of resident memory (blocks rounded
    to 2 MiB and backed by huge pages added 40 MiB)."""
    code = textwrap.dedent("""
        import numpy as np, fastnn
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096
        x = np.ones((1 << 18) + 1, np.float32)       # 1 MiB + 4 bytes
        fastnn.F.relu(x); fastnn.empty_cache()      # warm up everything but the blocks
        before = rss()
        results = [fastnn.F.relu(x) for _ in range(20)]
        grown = rss() - before
        del results
        assert fastnn._cpu.cached_bytes() == 20 * ((x.nbytes + 4095) // 4096 * 4096)
        print(grown)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    grown = int(proc.stdout.split()[-1])
    assert grown < 24 * (1 << 20), f"20 results of 1 MiB added {grown / 2**20:.1f} MiB"
