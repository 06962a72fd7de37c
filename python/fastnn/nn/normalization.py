"""``BatchNorm1d`` and ``BatchNorm2d`` over fastnn's batch-norm kernels (fused ReLU included)."""

import numpy as np

from ..functional import raw as F  # arrays only: no Parameter unwrapping
from .module import Module, check_bool, check_float, check_grad, check_input, check_int, factory_dtype
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    _ndims = ()  # the input ranks the layer takes
    _layout = ""  # for error messages

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 *, bias=True, channels_last=False, activation=None, dtype=None):
        super().__init__()
        self.num_features = check_int(num_features, "num_features", 1)
        self.eps = check_float(eps, "eps")
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {self.eps}")
        self.momentum = None if momentum is None else check_float(momentum, "momentum")
        if self.momentum is not None and not 0 <= self.momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1] or None, got {self.momentum}")
        self.affine = check_bool(affine, "affine")
        check_bool(bias, "bias")
        self.track_running_stats = check_bool(track_running_stats, "track_running_stats")
        self.channels_last = check_bool(channels_last, "channels_last")
        if activation not in (None, "relu"):
            raise ValueError(f"activation must be None or 'relu', got {activation!r}")
        self.activation = activation
        dtype = factory_dtype(dtype)
        c = self.num_features
        if affine:
            self.weight = Parameter(np.ones(c, dtype))
            if bias:
                self.bias = Parameter(np.zeros(c, dtype))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype))
            self.register_buffer("running_var", np.ones(c, dtype))
            self.register_buffer("num_batches_tracked", np.zeros((), np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.fill(0)
            self.running_var.fill(1)
            self.num_batches_tracked.fill(0)

    def reset_parameters(self):
        self.reset_running_stats()
        if self.weight is not None:
            self.weight.data.fill(1)
        if self.bias is not None:
            self.bias.data.fill(0)

    def _input_dtype(self):
        """The dtype inputs must have: the parameters' or buffers' (None: any float, when
        the layer has neither)."""
        for array in (self.weight, self.running_mean):
            if array is not None:
                return array.dtype
        return None

    def forward(self, x):
        return self._forward(x, self.activation)

    def _forward(self, x, activation):
        """The forward, with a ReLU fused in when activation='relu' (Sequential fuses a
        following ReLU layer this way)."""
        x = check_input(self, x, self._input_dtype())
        axis = -1 if self.channels_last else 1
        if x.ndim not in self._ndims or x.shape[axis] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected input of shape {self._expected()}, "
                             f"got {tuple(x.shape)}")
        # torch's rules: batch statistics in training, and in eval when there are no running ones
        training = self.training or self.running_mean is None
        tracking = self.training and self.track_running_stats
        running_mean = self.running_mean if (not self.training or tracking) else None
        running_var = self.running_var if (not self.training or tracking) else None
        weight = None if self.weight is None else self.weight.data
        bias = None if self.bias is None else self.bias.data
        y, mean, invstd = F.batch_norm_forward(
            x, weight, bias, running_mean, running_var, training=training, momentum=self.momentum,
            eps=self.eps, channel_axis=axis, activation=activation,
            num_batches_tracked=self.num_batches_tracked if tracking else None)
        self._saved = (x, y if activation else None, mean, invstd, training, activation)
        return y

    def backward(self, dy, *, input_grad=True):
        x, y, mean, invstd, training, activation = self._saved_state(input_grad)
        dy = check_grad(self, dy, x.shape, x.dtype)
        self._saved = None
        weight = self.weight
        dx, dweight, dbias = F.batch_norm_backward(
            dy, x, None if weight is None else weight.data, mean, invstd, training=training,
            channel_axis=-1 if self.channels_last else 1, activation=activation, y=y)
        if weight is not None and weight.requires_grad:
            weight._accumulate(dweight)
        if self.bias is not None and self.bias.requires_grad:
            self.bias._accumulate(dbias)
        return dx if input_grad else None

    def _expected(self):
        return self._layout.replace("C", str(self.num_features))

    def extra_repr(self):
        s = (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
             f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")
        if self.channels_last:
            s += ", channels_last=True"
        if self.activation is not None:
            s += f", activation={self.activation!r}"
        return s


class BatchNorm1d(_BatchNorm):
    """Batch normalization (Ioffe & Szegedy 2015) of x (N, C) or (N, C, L), torch's
    BatchNorm1d: ``eps``, ``momentum`` (None: the cumulative average of every batch's
    statistics), ``affine`` (weight ones, bias zeros; ``bias=False``: the weight only),
    ``track_running_stats`` (buffers
    running_mean, running_var, num_batches_tracked). Training normalizes with the batch
    statistics and updates the running ones; eval uses the running ones (batch
    statistics if there are none).

    ``channels_last=True``: x is (N, C) or (N, L, C). ``activation='relu'``: a ReLU
    fused into the same pass (as is a ReLU layer right after it in a Sequential).
    Keeps x (a reference), the per-channel mean and 1/std, and with the fused ReLU its
    output y (the ReLU's mask)."""

    _ndims = (2, 3)

    @property
    def _layout(self):
        return "(N, C) or (N, L, C)" if self.channels_last else "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalization of x (N, C, H, W) (``channels_last=True``: (N, H, W, C)), per
    channel over N, H and W; otherwise as BatchNorm1d (same arguments, buffers and fused
    ReLU). Keeps x (a reference), the per-channel mean and 1/std, and with the fused
    ReLU its output y."""

    _ndims = (4,)

    @property
    def _layout(self):
        return "(N, H, W, C)" if self.channels_last else "(N, C, H, W)"
