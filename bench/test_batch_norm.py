"""Batch norm (and fused batch norm + ReLU, at the end): fastnn vs NumPy vs PyTorch CPU vs
the memory floor, float32.

Each group (op, layout, shape) holds:
  fastnn       the default call (a fresh result)
  fastnn_out   the same call writing into out= arrays
  numpy        what a user writes in NumPy
  torch        torch.nn.functional.batch_norm / aten's backward (if torch is installed)
  floor        a native streaming loop over the same arrays: a copy of x for the forward
               (x read, y written), out = a + b for the backward (x and dy read, dx written)
"""

import numpy as np
import pytest

import fastnn

SHAPES = [(32, 64, 32, 32), (64, 64, 56, 56)]
LAYOUTS = ["NCHW", "NHWC"]
IMPLS = ["fastnn", "fastnn_out", "numpy", "torch", "floor"]
EPS, MOMENTUM = 1e-5, 0.1


class Case:
    def __init__(self, shape, layout):
        rng = np.random.default_rng(0)
        n, c, h, w = shape
        x = rng.standard_normal(shape, dtype=np.float32) * 2 + 1
        dy = rng.standard_normal(shape, dtype=np.float32)
        self.axis = 1 if layout == "NCHW" else -1
        if layout == "NHWC":
            x, dy = (np.ascontiguousarray(a.transpose(0, 2, 3, 1)) for a in (x, dy))
        self.layout, self.x, self.dy = layout, x, dy
        self.reduce_axes = (0, 2, 3) if layout == "NCHW" else (0, 1, 2)
        self.bshape = (c, 1, 1) if layout == "NCHW" else (c,)
        self.weight = rng.uniform(0.5, 1.5, c).astype(np.float32)
        self.bias = rng.standard_normal(c).astype(np.float32)
        self.running_mean = np.zeros(c, np.float32)
        self.running_var = np.ones(c, np.float32)
        fwd = fastnn.F.batch_norm_forward(x, self.weight, self.bias, None, None,
                                          channel_axis=self.axis)
        self.mean, self.invstd = fwd.mean, fwd.invstd
        self.out = np.empty_like(x)


def fastnn_call(case, op, out):
    F = fastnn.F
    if op == "forward_train":
        return lambda: F.batch_norm_forward(case.x, case.weight, case.bias, case.running_mean,
                                            case.running_var, training=True,
                                            channel_axis=case.axis, out=out)
    if op == "forward_eval":
        return lambda: F.batch_norm_forward(case.x, case.weight, case.bias, case.running_mean,
                                            case.running_var, training=False,
                                            channel_axis=case.axis, out=out)
    return lambda: F.batch_norm_backward(case.dy, case.x, case.weight, case.mean, case.invstd,
                                         channel_axis=case.axis, out=out)


def numpy_call(case, op):
    x, dy, ax, bs = case.x, case.dy, case.reduce_axes, case.bshape
    w, b = case.weight.reshape(bs), case.bias.reshape(bs)
    m = x.size // x.shape[case.axis]

    def forward_train():
        mean = x.mean(axis=ax)
        var = x.var(axis=ax)
        case.running_mean[:] = (1 - MOMENTUM) * case.running_mean + MOMENTUM * mean
        case.running_var[:] = (1 - MOMENTUM) * case.running_var + MOMENTUM * var * m / (m - 1)
        return (x - mean.reshape(bs)) / np.sqrt(var.reshape(bs) + EPS) * w + b

    def forward_eval():
        return ((x - case.running_mean.reshape(bs)) / np.sqrt(case.running_var.reshape(bs) + EPS)
                * w + b)

    def backward():
        invstd = case.invstd.reshape(bs)
        xhat = (x - case.mean.reshape(bs)) * invstd
        dbias = dy.sum(axis=ax)
        dweight = (dy * xhat).sum(axis=ax)
        dx = w * invstd / m * (m * dy - dbias.reshape(bs) - xhat * dweight.reshape(bs))
        return dx, dweight, dbias

    return {"forward_train": forward_train, "forward_eval": forward_eval,
            "backward": backward}[op]


def torch_call(case, op):
    torch = pytest.importorskip("torch")
    fmt = torch.contiguous_format if case.layout == "NCHW" else torch.channels_last

    def tensor(a):
        t = torch.from_numpy(a)
        return t.permute(0, 3, 1, 2) if case.layout == "NHWC" else t  # NCHW view, channels_last memory

    x, dy = tensor(case.x), tensor(case.dy)
    assert x.is_contiguous(memory_format=fmt)
    w, b = torch.from_numpy(case.weight), torch.from_numpy(case.bias)
    rm, rv = torch.from_numpy(case.running_mean), torch.from_numpy(case.running_var)
    if op == "forward_train":
        return lambda: torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True,
                                                      momentum=MOMENTUM, eps=EPS)
    if op == "forward_eval":
        return lambda: torch.nn.functional.batch_norm(x, rm, rv, w, b, training=False, eps=EPS)
    _, save_mean, save_invstd = torch.native_batch_norm(x, w, b, rm.clone(), rv.clone(), True,
                                                        MOMENTUM, EPS)
    return lambda: torch.ops.aten.native_batch_norm_backward(
        dy, x, w, rm, rv, save_mean, save_invstd, True, EPS, [True, True, True])


def floor_call(case, op):
    if op == "backward":
        return lambda: fastnn._cpu.stream_add(case.x, case.dy, case.out)
    return lambda: fastnn._cpu.stream_copy(case.x, case.out)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", ["forward_train", "forward_eval", "backward"])
def test_batch_norm(benchmark, op, shape, layout, impl):
    case = Case(shape, layout)
    benchmark.group = f"batch_norm {op} {layout} {'x'.join(map(str, shape))} float32"
    if impl == "fastnn":
        fn = fastnn_call(case, op, None)
    elif impl == "fastnn_out":
        outs = (case.out, np.empty_like(case.weight), np.empty_like(case.weight))
        fn = fastnn_call(case, op, outs)
    elif impl == "numpy":
        fn = numpy_call(case, op)
    elif impl == "torch":
        fn = torch_call(case, op)
    else:
        fn = floor_call(case, op)
    benchmark.pedantic(fn, rounds=9 if case.x.size > 4_000_000 else 25, warmup_rounds=2)


# --------------------------------------------------------------- fused batch norm + ReLU
# Each group (op, layout, shape) holds:
#   fused        batch_norm_forward(..., activation='relu') / backward with y=
#   fused_out    the same with out=
#   unfused      fastnn batch norm, then a separate ReLU pass in place (fastnn.F.relu if
#                this build has it, else numpy.maximum(y, 0, out=y)); backward: the mask
#                pass dy * (y > 0) into a buffer, then batch_norm_backward
#   torch        F.relu(F.batch_norm(...)); backward: threshold_backward then aten's
#                batch-norm backward (what autograd runs)
#   floor        forward: copy (x read, y written); backward: a + b (x, dy read, dx written)
#                plus a read of y (the fused backward reads y for the mask)
RELU_IMPLS = ["fused", "fused_out", "unfused", "torch", "floor"]


def relu_in_place(y):
    relu = getattr(fastnn.F, "relu", None)
    return relu(y, out=y) if relu is not None else np.maximum(y, 0, out=y)


def bn_relu_fastnn(case, op, impl):
    F = fastnn.F
    training = op != "forward_eval"
    fwd = F.batch_norm_forward(case.x, case.weight, case.bias, None, None, channel_axis=case.axis,
                               activation="relu")
    y, mean, invstd = fwd
    if op != "backward":
        if impl == "unfused":
            def unfused_forward():
                r = F.batch_norm_forward(case.x, case.weight, case.bias, case.running_mean,
                                         case.running_var, training=training, channel_axis=case.axis,
                                         out=case.out)
                relu_in_place(r.y)
                return r
            return unfused_forward
        out = (case.out, None, None) if impl == "fused_out" else None
        return lambda: F.batch_norm_forward(case.x, case.weight, case.bias, case.running_mean,
                                            case.running_var, training=training,
                                            channel_axis=case.axis, activation="relu", out=out)
    if impl == "unfused":
        masked = np.empty_like(case.dy)

        def unfused_backward():
            np.multiply(case.dy, y > 0, out=masked)
            return F.batch_norm_backward(masked, case.x, case.weight, mean, invstd,
                                         channel_axis=case.axis, out=(case.out, None, None))
        return unfused_backward
    out = (case.out, np.empty_like(case.weight), np.empty_like(case.weight)) if impl == "fused_out" else None
    return lambda: F.batch_norm_backward(case.dy, case.x, case.weight, mean, invstd,
                                         channel_axis=case.axis, activation="relu", y=y, out=out)


def bn_relu_torch(case, op):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional

    def tensor(a):
        t = torch.from_numpy(a)
        return t.permute(0, 3, 1, 2) if case.layout == "NHWC" else t

    x, dy = tensor(case.x), tensor(case.dy)
    w, b = torch.from_numpy(case.weight), torch.from_numpy(case.bias)
    rm, rv = torch.from_numpy(case.running_mean), torch.from_numpy(case.running_var)
    if op != "backward":
        training = op == "forward_train"
        return lambda: tf.relu(tf.batch_norm(x, rm, rv, w, b, training=training,
                                             momentum=MOMENTUM, eps=EPS))
    z, save_mean, save_invstd = torch.native_batch_norm(x, w, b, rm.clone(), rv.clone(), True,
                                                        MOMENTUM, EPS)
    y = tf.relu(z)
    return lambda: torch.ops.aten.native_batch_norm_backward(
        torch.ops.aten.threshold_backward(dy, y, 0), x, w, rm, rv, save_mean, save_invstd, True,
        EPS, [True, True, True])


def bn_relu_floor(case, op):
    if op != "backward":
        return floor_call(case, op)
    y = np.maximum(case.x, 0)

    def backward_floor():
        fastnn._cpu.stream_add(case.x, case.dy, case.out)
        return fastnn._cpu.stream_read(y)
    return backward_floor


@pytest.mark.parametrize("impl", RELU_IMPLS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("op", ["forward_train", "forward_eval", "backward"])
def test_batch_norm_relu(benchmark, op, shape, layout, impl):
    case = Case(shape, layout)
    benchmark.group = f"batch_norm+relu {op} {layout} {'x'.join(map(str, shape))} float32"
    if impl == "torch":
        fn = bn_relu_torch(case, op)
    elif impl == "floor":
        fn = bn_relu_floor(case, op)
    else:
        fn = bn_relu_fastnn(case, op, impl)
    benchmark.pedantic(fn, rounds=9 if case.x.size > 4_000_000 else 25, warmup_rounds=2)
