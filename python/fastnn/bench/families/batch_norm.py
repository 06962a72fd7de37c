"""Batch norm forward (training, eval) and backward, NCHW and NHWC, with and without
the fused ReLU (then also fastnn's batch norm followed by a separate relu pass).
Images are (N, 64, 32, 32), N from the size."""

import functools

import numpy as np

import fastnn
from ..registry import C, Built, Case, Floor, image, rng, stream

F = fastnn.F
EPS, MOMENTUM = 1e-5, 0.1


def _batch_norm(op, relu, layout, n, torch):
    gen = rng()
    x = image(n, layout, gen) * 2 + 1
    dy = gen.standard_normal(x.shape, dtype=np.float32)
    axis = 1 if layout == "NCHW" else -1
    reduce_axes = (0, 2, 3) if layout == "NCHW" else (0, 1, 2)
    bshape = (C, 1, 1) if layout == "NCHW" else (C,)
    m = x.size // C
    weight = gen.uniform(0.5, 1.5, C).astype(np.float32)
    bias = gen.standard_normal(C).astype(np.float32)
    act = "relu" if relu else None
    training = op != "forward_eval"

    def running():
        return np.zeros(C, np.float32), np.ones(C, np.float32)

    y, mean, invstd = F.batch_norm_forward(x, weight, bias, None, None, channel_axis=axis,
                                           activation=act)
    out, dw, db = np.empty_like(x), np.empty_like(weight), np.empty_like(weight)
    rm_f, rv_f = running()
    rm_n, rv_n = running()
    w, b = weight.reshape(bshape), bias.reshape(bshape)
    impls, views = {}, {}

    if op != "backward":
        def fastnn_call(o):
            return lambda: F.batch_norm_forward(x, weight, bias, rm_f, rv_f, training=training,
                                                channel_axis=axis, activation=act, out=o)

        impls["fastnn"], impls["fastnn_out"] = fastnn_call(None), fastnn_call((out, None, None))

        def numpy_forward():
            if training:
                mu, var = x.mean(axis=reduce_axes), x.var(axis=reduce_axes)
                rm_n[:] = (1 - MOMENTUM) * rm_n + MOMENTUM * mu
                rv_n[:] = (1 - MOMENTUM) * rv_n + MOMENTUM * var * m / (m - 1)
            else:
                mu, var = rm_n, rv_n
            r = (x - mu.reshape(bshape)) / np.sqrt(var.reshape(bshape) + EPS) * w + b
            return np.maximum(r, 0, out=r) if relu else r

        impls["numpy"] = numpy_forward
        floor = Floor(stream([x], [out]))
    else:
        def fastnn_call(o):
            return lambda: F.batch_norm_backward(dy, x, weight, mean, invstd, channel_axis=axis,
                                                 activation=act, y=y if relu else None, out=o)

        impls["fastnn"], impls["fastnn_out"] = fastnn_call(None), fastnn_call((out, dw, db))

        def numpy_backward():
            g = dy * (y > 0) if relu else dy
            inv = invstd.reshape(bshape)
            xhat = (x - mean.reshape(bshape)) * inv
            dbias = g.sum(axis=reduce_axes)
            dweight = (g * xhat).sum(axis=reduce_axes)
            dx = w * inv / m * (m * g - dbias.reshape(bshape) - xhat * dweight.reshape(bshape))
            return dx, dweight, dbias

        impls["numpy"] = numpy_backward
        floor = Floor(stream([x, dy, y] if relu else [x, dy], [out]))

    if torch is not None:
        tf = torch.nn.functional

        def tensor(a):  # NCHW view; channels_last memory for NHWC
            t = torch.from_numpy(a)
            return t.permute(0, 3, 1, 2) if layout == "NHWC" else t

        tx, tdy = tensor(x), tensor(dy)
        tw, tb = torch.from_numpy(weight), torch.from_numpy(bias)
        trm, trv = (torch.from_numpy(a) for a in running())
        aten = torch.ops.aten
        t_out = tensor(np.empty_like(x))  # torch_out's preallocated results
        t_mean, t_invstd, t_dw, t_db = (torch.empty(C) for _ in range(4))
        if op != "backward":
            bn = functools.partial(tf.batch_norm, tx, trm, trv, tw, tb, training=training,
                                   momentum=MOMENTUM, eps=EPS)
            impls["torch"] = (lambda: tf.relu(bn())) if relu else bn

            def torch_forward_out():
                aten.native_batch_norm.out(tx, tw, tb, trm, trv, training, MOMENTUM, EPS,
                                           out=t_out, save_mean=t_mean, save_invstd=t_invstd)
                return aten.relu_(t_out) if relu else t_out

            impls["torch_out"] = torch_forward_out
        else:
            z, save_mean, save_invstd = torch.native_batch_norm(tx, tw, tb, trm.clone(), trv.clone(),
                                                                True, MOMENTUM, EPS)
            ty = tf.relu(z)
            bwd = aten.native_batch_norm_backward
            t_masked = tensor(np.empty_like(x))

            def torch_backward():  # what autograd runs
                g = aten.threshold_backward(tdy, ty, 0) if relu else tdy
                return bwd(g, tx, tw, trm, trv, save_mean, save_invstd, True, EPS, [True, True, True])

            def torch_backward_out():
                g = aten.threshold_backward.grad_input(tdy, ty, 0, grad_input=t_masked) if relu else tdy
                return bwd.out(g, tx, tw, trm, trv, save_mean, save_invstd, True, EPS, [True, True, True],
                               out0=t_out, out1=t_dw, out2=t_db)

            impls["torch"], impls["torch_out"] = torch_backward, torch_backward_out
        if layout == "NHWC":
            back = lambda t: t.permute(0, 2, 3, 1)  # noqa: E731
            views["torch"] = back if op != "backward" else lambda r: (back(r[0]),) + tuple(r[1:])
            views["torch_out"] = views["torch"]

    if relu:  # fastnn's batch norm, then a separate relu pass (backward: mask pass first)
        masked = np.empty_like(dy)
        if op != "backward":
            def unfused():
                r = F.batch_norm_forward(x, weight, bias, rm_f, rv_f, training=training,
                                         channel_axis=axis, out=(out, None, None))
                return F.relu(r.y, out=r.y)
        else:
            def unfused():
                F.relu_backward(dy, y, out=masked)
                return F.batch_norm_backward(masked, x, weight, mean, invstd, channel_axis=axis,
                                             out=(out, dw, db))
        impls["fastnn_unfused"] = unfused
    impls["floor"] = floor
    return Built(impls, floor, views)


def cases():
    part = functools.partial
    for relu in (False, True):
        for op in ("forward_train", "forward_eval", "backward"):
            for layout in ("NCHW", "NHWC"):
                yield Case("batch_norm", f"batch_norm{'_relu' if relu else ''} {op}", layout,
                           part(_batch_norm, op, relu, layout),
                           extras=(("fastnn_unfused", "fastnn BN then relu"),) if relu else (),
                           torch_out=True)
