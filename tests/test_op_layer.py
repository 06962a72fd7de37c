"""The op layer shared by the CPU and CUDA modules: array views made from NumPy arrays
and from ``__cuda_array_interface__``, the checks every op runs on them before any
launch, the typed optimizer protocol, and what the bindings do around a kernel
(numbers in messages as Python prints them, integer arguments of any size, masked
arrays and foreign tensors refused, a clean exit with a daemon thread in a kernel).

There is no GPU here: device arrays are stand-ins exposing ``__cuda_array_interface__``
with pointers into unmapped memory, so a call that got as far as touching their data
would crash the test run instead of passing.
"""

import subprocess
import sys

import numpy as np
import pytest

import fastnn
from fastnn import optim
from fastnn.nn import Parameter

F = fastnn.F
CUDA_BUILT = fastnn.info()["cuda_built"]
# A device call whose arguments pass every check stops there: without a GPU the CUDA
# module says so (or, not built, fastnn says the module is missing).
NO_DEVICE = "no CUDA device" if CUDA_BUILT else "CUDA module"
BASE = 0x1000  # page one: never mapped, so never read or written here


class DeviceArray:
    """Stands in for a CuPy array: only its __cuda_array_interface__ (version 3)."""

    def __init__(self, shape, typestr="<f4", data=BASE, readonly=False, strides=None, **extra):
        self.__cuda_array_interface__ = dict(shape=tuple(shape), typestr=typestr, data=(data, readonly),
                                             strides=strides, version=3, **extra)
        self.size = int(np.prod(shape))  # CuPy arrays have it too


def view(obj, name="x"):
    return fastnn._cpu._array_view(obj, name)


# ------------------------------------------------------------- views of device arrays


def test_device_view_reads_the_interface():
    v = view(DeviceArray((2, 3, 4), "<f8", data=BASE + 64, readonly=True, stream=1))
    assert v == {"data": BASE + 64, "shape": (2, 3, 4), "dtype": "float64", "itemsize": 8, "readonly": True,
                 "c_contiguous": True, "aligned": True, "device": "cuda", "stream": 1}


@pytest.mark.parametrize("typestr, dtype, itemsize", [
    ("<f4", "float32", 4), ("<f8", "float64", 8), ("|u1", "uint8", 1), ("<i4", "int32", 4),
    ("<i8", "int64", 8), ("<f2", "float16", 2), ("|b1", "bool", 1), (">f4", ">f4", 4), ("<c8", "complex64", 8),
])
def test_device_view_dtypes(typestr, dtype, itemsize):
    v = view(DeviceArray((5,), typestr))
    assert (v["dtype"], v["itemsize"]) == (dtype, itemsize)


@pytest.mark.parametrize("shape, strides", [
    ((2, 3), (12, 4)),          # C order, spelled out
    ((2, 1, 3), (12, 999, 4)),  # an axis of one element may have any stride
    ((0, 3), (4, 8)),           # an empty array is contiguous whatever its strides
    ((), ()),
])
def test_c_contiguous_strides_are_accepted(shape, strides):
    assert view(DeviceArray(shape, strides=strides))["c_contiguous"]


@pytest.mark.parametrize("shape, strides", [
    ((2, 3), (4, 8)),    # Fortran order
    ((2, 3), (24, 4)),   # every other row
    ((4,), (8,)),        # a strided vector
    ((4,), (-4,)),       # reversed
])
def test_other_strides_are_a_value_error_naming_the_argument(shape, strides):
    with pytest.raises(ValueError, match=r"^weight must be C-contiguous, got strides"):
        view(DeviceArray(shape, strides=strides), "weight")
    with pytest.raises(ValueError, match=r"^x must be C-contiguous"):
        F.relu(DeviceArray(shape, strides=strides))


def test_unaligned_device_pointer_is_seen_and_refused():
    assert not view(DeviceArray((4,), data=BASE + 2))["aligned"]
    with pytest.raises(ValueError, match="x must be aligned"):
        F.relu(DeviceArray((4,), data=BASE + 2))


@pytest.mark.parametrize("change, exc, match", [
    (dict(version=1), ValueError, "version 1"),
    (dict(typestr="f4"), ValueError, "malformed.*typestr"),
    (dict(typestr="<fx"), ValueError, "malformed.*typestr"),
    (dict(shape=[2, 3]), ValueError, "malformed.*shape must be a tuple"),
    (dict(shape=(2, -1)), ValueError, "malformed.*shape"),
    (dict(shape=(2, 2**70)), ValueError, "shape"),
    (dict(strides=(4,)), ValueError, "malformed.*strides"),
    (dict(data=(BASE,)), ValueError, "data must be"),
    (dict(data=(BASE, "no")), TypeError, "must be a bool"),
    (dict(stream=0), ValueError, "stream 0"),
    (dict(mask=DeviceArray((2, 3), "|b1")), TypeError, "mask"),
])
def test_malformed_interfaces_name_the_argument(change, exc, match):
    a = DeviceArray((2, 3))
    a.__cuda_array_interface__.update(change)
    with pytest.raises(exc, match=match) as info:
        view(a, "dy")
    assert str(info.value).startswith("dy")


def test_missing_interface_keys_and_non_dicts():
    a = DeviceArray((2, 3))
    del a.__cuda_array_interface__["typestr"]
    with pytest.raises(ValueError, match="no 'typestr'"):
        view(a)
    a.__cuda_array_interface__ = [("shape", (2, 3))]
    with pytest.raises(TypeError, match=r"x.__cuda_array_interface__ must be a dict"):
        view(a)


def test_host_views():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    v = view(x)
    assert (v["data"], v["shape"], v["dtype"], v["device"]) == (x.ctypes.data, (3, 4), "float32", "cpu")
    assert not view(x.T)["c_contiguous"]
    x.flags.writeable = False
    assert view(x)["readonly"]
    assert view(x.astype(">f4"))["dtype"] == ">f4"


# ------------------------------------------- every check runs before any launch


def _every_op_on_device_arrays():
    """A call of every op whose device arguments pass every check."""
    x, d2, w3 = DeviceArray((2, 3)), DeviceArray((2, 3), data=BASE + 4096), DeviceArray((3,), data=BASE + 8192)
    mask, labels = DeviceArray((1,), "|u1", data=BASE + 12288), DeviceArray((2,), "<i8", data=BASE + 12288)
    calls = [lambda: F.relu(x), lambda: F.relu(x, out=x), lambda: F.gelu_backward(x, x),
             lambda: F.leaky_relu(x, 0.1, out=d2), lambda: F.softplus_backward(d2, x, out=d2),
             lambda: F.batch_norm_forward(x, w3, None, None, None),
             lambda: F.batch_norm_forward(x, None, None, None, None, activation="relu", out=x),
             lambda: F.batch_norm_backward(d2, x, None, w3, w3),
             lambda: F.softmax_cross_entropy(x, labels), lambda: F.softmax_cross_entropy_backward(x, labels),
             lambda: F.softmax_cross_entropy(x, labels, check_labels=True),
             lambda: F.dropout(x, 0.5, seed=1), lambda: F.dropout_backward(d2, mask, 0.5),
             lambda: F.dropout_backward(d2, None, 0.5, seed=3),
             lambda: F.dropout_mask(6, 0.5, seed=1, out=mask), lambda: F.prelu(x, w3),
             lambda: F.prelu_backward(d2, x, w3), lambda: F.maxout(DeviceArray((2, 4)), 2),
             lambda: F.maxout_backward(DeviceArray((2, 2), data=BASE + 4096), DeviceArray((2, 4)), 2)]
    if CUDA_BUILT:
        calls += [lambda: fastnn._cuda.optim_all_finite([x, d2]), lambda: fastnn._cuda.stream_copy(x, d2),
                  lambda: fastnn._cuda.stream_pass([x], [d2]), lambda: fastnn._cuda._math_eval("erf", x)]
    return calls


@pytest.mark.parametrize("call", _every_op_on_device_arrays())
def test_a_call_whose_arrays_pass_stops_before_launch(call):
    """Device arrays reach the CUDA module, which checks them as the CPU module would and
    then, with no GPU here, refuses the launch; the stand-ins' pointers are never read."""
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        call()


@pytest.mark.skipif(not CUDA_BUILT, reason="fastnn built without its CUDA module")
def test_device_calls_reach_the_cuda_module():
    assert fastnn._backend.select("relu", x=DeviceArray((2,)), out=None) is fastnn._cuda
    assert fastnn._backend.select("relu", x=np.ones(2), out=None) is fastnn._cpu
    for name in ("batch_norm_forward", "batch_norm_backward", "dropout", "dropout_backward", "dropout_mask",
                 "prelu", "prelu_backward", "maxout", "maxout_backward", "softmax_cross_entropy",
                 "softmax_cross_entropy_backward", "optim_step", "optim_all_finite", "gelu", "gelu_backward"):
        assert hasattr(fastnn._cuda, name), name


@pytest.mark.skipif(not CUDA_BUILT or fastnn.info()["cuda_devices"] > 0, reason="needs the CUDA module and no GPU")
def test_no_device_message_carries_cudas_own_words():
    with pytest.raises(RuntimeError) as info:
        F.relu(DeviceArray((2, 3)))
    message = str(info.value)
    assert message.startswith("relu: no CUDA device (")
    # cudaGetDeviceCount's own message: no driver, or a driver that finds no GPU
    assert any(s in message for s in ("driver", "no CUDA-capable device", "the driver reports none")), message


@pytest.mark.skipif(not CUDA_BUILT, reason="fastnn built without its CUDA module")
def test_the_cuda_module_refuses_host_arrays():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=r"x is a NumPy array \(host memory\); fastnn._cuda.relu takes GPU arrays"):
        fastnn._cuda.relu(x, None)
    with pytest.raises(TypeError, match="params\\[0\\] is a NumPy array"):
        fastnn._cuda.optim_step(**_sgd_call()[1])


@pytest.mark.skipif(not CUDA_BUILT, reason="fastnn built without its CUDA module")
def test_stream_pick_up(monkeypatch):
    """The launch stream: the first array's interface stream, else CuPy's current stream
    when CuPy is imported, else the legacy default stream (1). No device needed."""
    launch_stream = fastnn._cuda._launch_stream
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    assert launch_stream(DeviceArray((2,), stream=0xabc0)) == 0xabc0
    assert launch_stream(DeviceArray((2,)), None, DeviceArray((2,), stream=2), DeviceArray((2,), stream=7)) == 2
    assert launch_stream(DeviceArray((2,))) == 1

    class Stream:
        ptr = 0x5150

    class FakeCupy:
        class cuda:
            @staticmethod
            def get_current_stream():
                return Stream()
    monkeypatch.setitem(sys.modules, "cupy", FakeCupy)
    assert launch_stream(DeviceArray((2,))) == 0x5150
    assert launch_stream(DeviceArray((2,), stream=1)) == 1  # the interface's stream wins


@pytest.mark.parametrize("call, exc, match", [
    (lambda: F.relu(DeviceArray((2, 3), "<f2")), TypeError, "x must have dtype float32 or float64.*float16"),
    (lambda: F.relu(DeviceArray((2, 3)), out=DeviceArray((2, 3), "<f8")), TypeError, "out has dtype float64"),
    (lambda: F.relu(DeviceArray((2, 3)), out=DeviceArray((3, 2), data=BASE + 4096)), ValueError,
     r"out must have shape \(2, 3\)"),
    (lambda: F.relu(DeviceArray((2, 3)), out=DeviceArray((2, 3), data=BASE + 4096, readonly=True)),
     ValueError, "out is read-only"),
    (lambda: F.relu(DeviceArray((2, 3)), out=DeviceArray((2, 3), data=BASE + 4)), ValueError,
     "out overlaps x"),
    (lambda: F.batch_norm_forward(DeviceArray((4, 3)), DeviceArray((4,)), None, None, None), ValueError,
     r"weight must have shape \(3,\)"),
    (lambda: F.batch_norm_forward(DeviceArray((1, 3)), None, None, None, None), ValueError,
     "more than 1 value per channel"),
    (lambda: F.softmax_cross_entropy(DeviceArray((2, 3)), DeviceArray((2,), "<f4")), TypeError,
     "labels must have dtype int32 or int64"),
    (lambda: F.maxout(DeviceArray((2, 5)), 2), ValueError, "pieces .2. must divide the 5 channels"),
    (lambda: F.dropout(DeviceArray((9,)), 0.5, seed=1, out=(None, DeviceArray((1,), "|u1"))), ValueError,
     r"out \(mask\) must have shape \(2,\)"),
])
def test_device_arrays_get_the_same_checks(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("call, match", [
    (lambda x, d: F.relu(x, out=d), "out is on the GPU .CuPy. but x is a NumPy array"),
    (lambda x, d: F.relu(d, out=x), "out is a NumPy array .host memory. but x is on the GPU"),
    (lambda x, d: F.gelu_backward(x, d), "dy is a NumPy array"),
    (lambda x, d: F.prelu(x, d), "weight is on the GPU"),
    (lambda x, d: F.batch_norm_forward(d, None, None, x[0], x[0]), "running_mean is a NumPy array"),
    (lambda x, d: F.dropout_backward(d, np.zeros(1, np.uint8), 0.5), "mask is a NumPy array"),
])
def test_mixed_devices_are_a_type_error_naming_both(call, match):
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match=match + ".*same device"):
        call(x, DeviceArray((2, 3)))


class FakeCupyArray(DeviceArray):
    """A stand-in with the CuPy attributes fastnn's Python layer reads (dtype, shape,
    flags, device), over an unmapped pointer."""

    class _Flags:
        c_contiguous = True

    class _Device:
        id = 0

    def __init__(self, shape, dtype=np.float32, data=BASE, readonly=False):
        super().__init__(shape, np.dtype(dtype).str, data=data, readonly=readonly)
        self.shape, self.dtype, self.flags, self.device = tuple(shape), np.dtype(dtype), self._Flags(), self._Device()
        self.ndim = len(shape)


def test_parameters_hold_gpu_arrays():
    p = Parameter(FakeCupyArray((3, 2)))
    assert p.device == "cuda:0" and p.shape == (3, 2) and p.dtype == np.float32
    with pytest.raises(TypeError, match=r"grad must be None or a cupy.ndarray \(the parameter is on the GPU\)"):
        p.grad = np.zeros((3, 2), np.float32)
    with pytest.raises(TypeError, match="grad has dtype float64"):
        p.grad = FakeCupyArray((3, 2), np.float64, data=BASE + 4096)
    p.grad = FakeCupyArray((3, 2), data=BASE + 4096)
    with pytest.raises(TypeError, match="lives on the GPU"):
        np.asarray(p)
    with pytest.raises(ValueError, match="data is read-only"):
        Parameter(FakeCupyArray((3,), readonly=True))
    with pytest.raises(TypeError, match="data must have dtype float32 or float64, got int32"):
        Parameter(FakeCupyArray((3,), np.int32))
    host = Parameter(np.zeros(2, np.float32))
    with pytest.raises(TypeError, match="grad must be None or a numpy.ndarray"):
        host.grad = FakeCupyArray((2,))


def test_an_optimizer_step_on_gpu_parameters_reaches_the_cuda_module():
    p = Parameter(FakeCupyArray((5,)))
    p.grad = FakeCupyArray((5,), data=BASE + 4096)
    opt = optim.SGD([p], lr=0.1)
    with pytest.raises(RuntimeError, match="optim_step: no CUDA device" if CUDA_BUILT else "CUDA module"):
        opt.step()
    p.grad = None
    with pytest.raises(TypeError, match=r"grad must be None or a cupy.ndarray"):
        p.grad = np.ones(5, np.float32)


def test_check_labels_must_be_a_bool():
    x, labels = np.zeros((2, 3), np.float32), np.array([0, 3])
    with pytest.raises(TypeError, match="check_labels must be a bool, got int"):
        F.softmax_cross_entropy(x, labels, check_labels=1)
    with pytest.raises(ValueError, match=r"labels\[1\] = 3 is out of range"):  # host labels: always checked
        F.softmax_cross_entropy(x, labels, check_labels=False)


def test_gpu_benchmark_without_cupy_or_a_gpu_says_why():
    proc = subprocess.run([sys.executable, "-m", "fastnn", "bench", "--device", "cuda", "--quick"],
                          capture_output=True, text=True, timeout=120)
    if fastnn.info()["cuda_devices"] == 0:
        assert proc.returncode == 2
        assert "needs CuPy" in proc.stdout or "no CUDA device" in proc.stdout or "CUDA module" in proc.stdout


# ------------------------------------------------ what the bindings do with arguments


@pytest.mark.parametrize("momentum", [1.5, 1.0000000000000002, -1e-12, -0.0001, 1e16, -2.5e-300, 123456789.125,
                                      float("nan"), float("inf"), float("-inf")])
def test_numbers_in_messages_print_as_python_does(momentum):
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError) as info:
        F.batch_norm_forward(x, None, None, None, None, momentum=momentum)
    assert str(info.value) == f"momentum must be in [0, 1], got {momentum!r}"


@pytest.mark.parametrize("eps", [0.0, -0.0, -1e-12, -5e-324, float("inf")])
def test_eps_messages(eps):
    x = np.ones((4, 3), np.float32)
    with pytest.raises(ValueError, match="got " + repr(eps) + "$"):
        F.batch_norm_forward(x, None, None, None, None, eps=eps)


def test_repr_of_activation_parameters():
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=r"negative_slope must be a finite number, got inf$"):
        F.leaky_relu(x, float("inf"))
    with pytest.raises(ValueError, match=r"beta must be a finite number > 0, got -1e-05$"):
        F.softplus(x, beta=-1e-5)


@pytest.mark.parametrize("big", [2**70, -2**70, 2**63])
def test_integers_beyond_64_bits_get_our_message(big):
    x = np.ones((2, 4), np.float32)
    w = np.ones(4, np.float32)
    axis = r"channel_axis must be 1 \(channels first\) or -1 \(channels last\), got " + str(big)
    for call, match in [
        (lambda: F.maxout(x, big), r"pieces must be an integer in \[1, 2\*\*24\], got " + str(big)),
        (lambda: F.maxout(x, 2, channel_axis=big), axis),
        (lambda: F.maxout_backward(x[:, :2], x, 2, channel_axis=big), axis),
        (lambda: F.prelu(x, w, channel_axis=big), axis),
        (lambda: F.batch_norm_forward(x, w, w, None, None, channel_axis=big), axis),
        (lambda: F.batch_norm_backward(x, x, w, w, w, channel_axis=big), axis),
        (lambda: F.dropout_mask(big, 0.5, seed=1), r"n must be in \[0, 2\*\*63 - 1\]"),
        (lambda: fastnn.set_num_threads(big), r"n must be an integer in \[1, \d+\], got " + str(big)),
    ]:
        with pytest.raises(ValueError, match=match):
            call()


def test_numpy_integers_are_ints(num_threads):
    x = np.arange(8, dtype=np.float64).reshape(2, 4)
    for t in (np.int64, np.int32, np.uint8, np.int16):
        np.testing.assert_array_equal(F.maxout(x, t(2), channel_axis=t(1)), [[1, 3], [5, 7]])
    with num_threads(2):
        two = fastnn.get_num_threads()  # 2, or 1 in a build that runs one thread
        fastnn.set_num_threads(1)
        fastnn.set_num_threads(np.int64(2))
        assert fastnn.get_num_threads() == two
    for bad in (True, np.True_, 2.0, "2"):
        with pytest.raises(TypeError, match="n must be an int"):
            fastnn.set_num_threads(bad)


def test_masked_arrays_are_refused():
    x = np.ma.masked_array(np.ones((2, 3), np.float32), mask=[[1, 0, 0], [0, 0, 1]])
    plain = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="x is a numpy.ma.MaskedArray.*ignore its mask"):
        F.relu(x)
    with pytest.raises(TypeError, match=r"out is a numpy.ma.MaskedArray"):
        F.relu(plain, out=x)
    with pytest.raises(TypeError, match="weight is a numpy.ma.MaskedArray"):
        F.batch_norm_forward(plain, np.ma.masked_array(np.ones(3, np.float32)), None, None, None)
    assert (x.data == 1).all()
    # NumPy's other subclasses are plain arrays.
    class Sub(np.ndarray):
        pass

    np.testing.assert_array_equal(F.relu((plain - 2).view(Sub)), np.zeros((2, 3)))


def test_foreign_tensors_name_the_argument(torch):
    t = torch.ones(4, 3)
    g = fastnn.random.Generator(5)
    for call in (lambda: F.relu(t), lambda: F.dropout(t, 0.5, generator=g), lambda: F.gelu_backward(t, t),
                 lambda: F.batch_norm_forward(t, None, None, None, None)):
        with pytest.raises(TypeError, match=r"^(x|dy) must be a numpy.ndarray or a CuPy array, got Tensor"):
            call()
    assert g.get_state() == (5, 0)  # refused before the generator moved
    with pytest.raises(TypeError, match=r"^x must be a numpy.ndarray or a CuPy array, got list"):
        F.dropout([1.0, 2.0], 0.5)


# ------------------------------------------------------ the typed optimizer protocol


def _sgd_call(**change):
    p, g = np.ones(5), np.full(5, 2.0)
    args = dict(rule="sgd", params=[p], grads=[g], state={}, scalars={}, has_state=[],
                hyper=dict(lr=0.5, weight_decay=0.0, maximize=False, grad_scale=1.0, momentum=0.0,
                           dampening=0.0, nesterov=False),
                check_finite=False)
    for key, value in change.items():
        if key in args["hyper"] or key.startswith("hyper_"):
            args["hyper"][key.removeprefix("hyper_")] = value
        else:
            args[key] = value
    return p, args


def test_optim_protocol_runs_with_every_key():
    p, args = _sgd_call()
    assert fastnn._cpu.optim_step(**args)
    np.testing.assert_array_equal(p, np.zeros(5))  # 1 - 0.5 * 2


@pytest.mark.parametrize("change, exc, match", [
    (dict(hyper_lrr=0.1), ValueError, "unknown hyper-parameter 'lrr' for rule 'sgd'"),
    (dict(hyper_beta1=0.9), ValueError, "unknown hyper-parameter 'beta1' for rule 'sgd'"),
    (dict(hyper_eps=1e-8), ValueError, "unknown hyper-parameter 'eps'"),
    (dict(nesterov=0), TypeError, "'nesterov' must be a bool"),
    (dict(lr=True), TypeError, "'lr' must be a number, not a bool"),
    (dict(lr="0.1"), TypeError, "'lr' must be a number or a bool, got str"),
    (dict(lr=-1e-12), ValueError, r"lr must be >= 0, got -1e-12$"),
    (dict(grad_scale=0.0), ValueError, r"grad_scale must be a finite number > 0, got 0.0"),
    (dict(state={"momentum_buffer": [np.zeros(5)]}), ValueError, "state 'momentum_buffer' must not be given"),
    (dict(state={"exp_avg": []}), ValueError, r"state 'exp_avg' is not one of rule 'sgd''s \(momentum_buffer\)"),
    (dict(scalars={"neg_clr": [1.0]}), ValueError, "scalar 'neg_clr' is not one of rule 'sgd''s"),
    (dict(rule="adamw"), ValueError, "rule must be 'sgd', 'adagrad', 'rmsprop' or 'adam'"),
    (dict(hyper=[]), TypeError, "hyper must be a dict"),
])
def test_optim_protocol_refuses_and_writes_nothing(change, exc, match):
    p, args = _sgd_call(**change)
    with pytest.raises(exc, match=match):
        fastnn._cpu.optim_step(**args)
    assert (p == 1).all()
    if CUDA_BUILT:  # the CUDA module runs the same protocol checks on device arrays
        _, args = _sgd_call(**change)
        for key in ("params", "grads"):
            args[key] = [DeviceArray((5,), "<f8", data=BASE + 4096 * (key == "grads"))]
        args["state"] = {k: [DeviceArray((5,), "<f8", data=BASE + 8192)] for k in args["state"]}
        with pytest.raises(exc, match=match):
            fastnn._cuda.optim_step(**args)


@pytest.mark.skipif(not CUDA_BUILT, reason="fastnn built without its CUDA module")
def test_cuda_optim_protocol_device_scalars_and_flags():
    adam = dict(lr=0.1, weight_decay=0.0, maximize=False, grad_scale=1.0, beta1=0.9, beta2=0.999, eps=1e-8,
                amsgrad=False, decoupled=False)
    params, grads = [DeviceArray((5,), data=BASE), DeviceArray((3,), data=BASE + 64)], \
        [DeviceArray((5,), data=BASE + 4096), DeviceArray((3,), data=BASE + 4160)]
    state = {"exp_avg": [DeviceArray((5,), data=BASE + 8192), DeviceArray((3,), data=BASE + 8256)],
             "exp_avg_sq": [DeviceArray((5,), data=BASE + 12288), DeviceArray((3,), data=BASE + 12352)]}

    def call(scalars, **kw):
        return fastnn._cuda.optim_step("adam", params, grads, state, scalars, [], adam, kw.pop("check", False), **kw)
    ok = {"neg_step_size": DeviceArray((2,), "<f8", data=BASE + 16384), "bias_correction2_sqrt": [1.0, 1.0]}
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        call(ok)
    with pytest.raises(TypeError, match=r"scalars\['neg_step_size'\] must have dtype float64, got float32"):
        call(dict(ok, neg_step_size=DeviceArray((2,), data=BASE + 16384)))
    with pytest.raises(ValueError, match=r"scalars\['neg_step_size'\] must have shape \(2,\), got \(3,\)"):
        call(dict(ok, neg_step_size=DeviceArray((3,), "<f8", data=BASE + 16384)))
    with pytest.raises(TypeError, match="must be a list of floats or a float64 GPU array"):
        call(dict(ok, neg_step_size=np.zeros(2)))
    flag = DeviceArray((), "|u1", data=BASE + 20480)
    with pytest.raises(RuntimeError, match=NO_DEVICE):
        call(ok, finite=flag)
    with pytest.raises(ValueError, match="check_finite=True or a finite flag, not both"):
        call(ok, finite=flag, check=True)
    with pytest.raises(TypeError, match="finite must be a 0-d uint8 GPU array"):
        call(ok, finite=DeviceArray((1,), "|u1", data=BASE + 20480))


def test_optim_protocol_missing_keys_and_slots():
    p, args = _sgd_call()
    del args["hyper"]["lr"]
    with pytest.raises(ValueError, match="missing hyper-parameter 'lr' for rule 'sgd'; it takes lr, weight_decay"):
        fastnn._cpu.optim_step(**args)
    p, args = _sgd_call(momentum=0.9)  # the momentum buffer is now used, but not given
    with pytest.raises(ValueError, match="state 'momentum_buffer' has 0 arrays but params has 1"):
        fastnn._cpu.optim_step(**args)
    adam = dict(lr=0.1, weight_decay=0.0, maximize=False, grad_scale=1.0, beta1=0.9, beta2=0.999, eps=1e-8,
                amsgrad=False, decoupled=False)
    m, v = np.zeros(5), np.zeros(5)
    call = dict(rule="adam", params=[p], grads=[np.ones(5)], state={"exp_avg": [m], "exp_avg_sq": [v]},
                scalars={"neg_step_size": [-1.0]}, has_state=[], hyper=adam, check_finite=False)
    with pytest.raises(ValueError, match="scalar 'bias_correction2_sqrt' must have one value per parameter"):
        fastnn._cpu.optim_step(**call)
    call["state"]["exp_avg"] = [p]
    call["scalars"]["bias_correction2_sqrt"] = [1.0]
    with pytest.raises(ValueError, match=r"exp_avg\[0\] overlaps params\[0\]"):
        fastnn._cpu.optim_step(**call)
    assert (p == 1).all() and not m.any() and not v.any()


def test_every_optimizer_speaks_the_protocol():
    """Each optimizer's native call names exactly the keys and slots its rule takes (a
    wrong one is an error now, so every option combination must get through)."""
    configs = [(optim.SGD, dict(momentum=0.9, nesterov=True)), (optim.SGD, dict(momentum=0.0)),
               (optim.Adagrad, dict(lr_decay=0.1)), (optim.RMSprop, dict(momentum=0.5, centered=True)),
               (optim.RMSprop, dict()), (optim.Adam, dict(amsgrad=True)), (optim.AdamW, dict())]
    for cls, kw in configs:
        p = Parameter(np.ones(7))
        opt = cls([p], lr=0.1, **kw)
        for _ in range(2):
            p.grad = np.full(7, 0.5)
            assert opt.step()
        assert (p.data < 1).all(), cls


# ----------------------------------------------------------------- process exit

_EXIT_WITH_THREADS_IN_KERNELS = """
import threading, time
import numpy as np
import fastnn
x = np.ones((16, 64, 64, 64), np.float32)
w = np.ones(64, np.float32)
def loop():
    while True:
        fastnn.F.gelu(x)
        fastnn.F.batch_norm_forward(x, w, w, None, None)
for _ in range(2):
    threading.Thread(target=loop, daemon=True).start()
time.sleep(0.2)
"""


def test_exit_while_daemon_threads_are_inside_kernels():
    """The interpreter ends daemon threads that ask for the GIL back at exit; taking it
    back must not abort the process ('terminate called without an active exception')."""
    for _ in range(3):
        proc = subprocess.run([sys.executable, "-c", _EXIT_WITH_THREADS_IN_KERNELS], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0 and "terminate" not in proc.stderr, (proc.returncode, proc.stderr)
