"""``SyncBatchNorm``: batch normalization over the whole batch of a data-parallel job."""

from collections import namedtuple

import numpy as np

from ..functional import raw as F  # arrays only: no Parameter unwrapping
from .module import array_module, check_grad, check_input
from .normalization import _BatchNorm

__all__ = ["SyncBatchNorm"]

# what a synchronized forward keeps: y only with the fused ReLU; count = the global batch's
_Synced = namedtuple("_Synced", ["x", "y", "mean", "invstd", "activation", "count"])


class SyncBatchNorm(_BatchNorm):
    """Batch normalization whose statistics are those of the batch of every rank
    together (torch's SyncBatchNorm): with ``fastnn.distributed`` initialized and more
    than one rank, training gives on each rank exactly what a BatchNorm gives on the
    concatenation of every rank's batch, running statistics included, also when the
    ranks hold different numbers of samples. Otherwise (eval, one process) it is a
    BatchNorm.

    x is (N, C, *) (``channels_last=True``: (N, *, C)); the arguments, parameters,
    buffers and fused ReLU are BatchNorm's.

    - Forward: each rank computes its per-channel (count, mean, M2) with the native
      batch-norm kernel; an all-gather brings every rank's, and every rank merges them
      in float64 in rank order (Chan et al.'s parallel formula:
      mean = sum(n_i mean_i) / n, M2 = sum(M2_i) + sum(n_i (mean_i - mean)^2)), so the
      ranks agree bit for bit. A second native pass normalizes with the merged
      statistics.
    - Backward: the per-channel sums of dy and dy * xhat are all-reduced for dx. The
      weight and bias gradients stay this rank's share: DistributedDataParallel
      averages them like every other gradient (their sum over ranks is the whole
      batch's gradient).
    - Every rank must run the forward and backward together (each is a collective).

    ``SyncBatchNorm.convert_sync_batchnorm(model)`` replaces every BatchNorm1d/2d.
    """

    _ndims = range(2, 33)

    @property
    def _layout(self):
        return "(N, *, C)" if self.channels_last else "(N, C, *)"

    @classmethod
    def convert_sync_batchnorm(cls, module):
        """``module`` with every BatchNorm1d/2d in it replaced by a SyncBatchNorm holding
        the same parameters, buffers and settings (the module itself if it is a
        BatchNorm: returns the new layer). Other modules are changed in place."""
        if isinstance(module, _BatchNorm) and not isinstance(module, cls):
            sync = cls.__new__(cls)
            sync.__dict__.update(module.__dict__)  # parameters, buffers, settings, mode
            for registry in ("_parameters", "_buffers", "_modules"):
                sync.__dict__[registry] = dict(module.__dict__[registry])
            sync._saved = None
            return sync
        for name, child in list(module._modules.items()):
            if child is not None:
                module._modules[name] = converted = cls.convert_sync_batchnorm(child)
                object.__setattr__(module, name, converted)
        return module

    def _forward(self, x, activation):
        from .. import distributed

        if not (self.training and distributed.is_initialized() and distributed.get_world_size() > 1):
            return super()._forward(x, activation)
        x = check_input(self, x, self._input_dtype())
        axis = -1 if self.channels_last else 1
        if x.ndim not in self._ndims or x.shape[axis] != self.num_features:
            raise ValueError(f"{type(self).__name__}: expected input of shape {self._expected()}, "
                             f"got {tuple(x.shape)}")
        xp = array_module(x)
        c = self.num_features
        count = x.size // c
        local = xp.zeros(1 + 2 * c, np.float64)  # count, mean (C), M2 (C)
        local[0] = count
        if count >= 2:
            _, mean, invstd = F.batch_norm_forward(x, None, None, None, None, training=True,
                                                   eps=self.eps, channel_axis=axis)
            local[1:1 + c] = mean
            # the kernel's invstd is 1 / sqrt(var + eps): var = invstd**-2 - eps, M2 = count * var
            var = 1 / invstd.astype(np.float64) ** 2 - self.eps
            local[1 + c:] = count * xp.maximum(var, 0)
        elif count == 1:
            local[1:1 + c] = x.reshape(c)
        stats = distributed.all_gather(local)
        counts, means, m2s = stats[:, :1], stats[:, 1:1 + c], stats[:, 1 + c:]
        n = float(counts.sum())
        if n <= 1:
            raise ValueError(f"{type(self).__name__}: expected more than 1 value per channel when "
                             f"training over every rank, got {int(n)}")
        mean = (counts * means).sum(axis=0) / n
        m2 = m2s.sum(axis=0) + (counts * (means - mean) ** 2).sum(axis=0)
        var = m2 / n

        weight = None if self.weight is None else self.weight.data
        bias = None if self.bias is None else self.bias.data
        # the eval-mode kernel normalizes with given statistics: here the merged ones
        y, mean_used, invstd = F.batch_norm_forward(
            x, weight, bias, mean.astype(x.dtype), var.astype(x.dtype), training=False,
            eps=self.eps, channel_axis=axis, activation=activation)
        if self.track_running_stats:
            self._update_running_stats(mean, m2 / (n - 1))
        self._saved = _Synced(x, y if activation else None, mean_used, invstd, activation, n)
        return y

    def _update_running_stats(self, mean, unbiased_var):
        nbt = self.num_batches_tracked
        momentum = 1.0 / (int(nbt) + 1) if self.momentum is None else self.momentum
        for running, batch in ((self.running_mean, mean), (self.running_var, unbiased_var)):
            running[...] = (1 - momentum) * running.astype(np.float64) + momentum * batch
        nbt += 1

    def backward(self, dy, *, input_grad=True):
        from .. import distributed

        saved = self._saved_state(input_grad)
        if not isinstance(saved, _Synced):
            return super().backward(dy, input_grad=input_grad)
        x, y, mean, invstd, activation, n = saved
        dy = check_grad(self, dy, x.shape, x.dtype)
        self._saved = None
        weight = self.weight
        w = None if weight is None else weight.data
        # eval-mode backward with the merged statistics: dx = dy * w * invstd (dy masked
        # by the fused ReLU), and this rank's sum(dy * xhat) and sum(dy)
        dx, dweight, dbias = F.batch_norm_backward(
            dy, x, w, mean, invstd, training=False, channel_axis=-1 if self.channels_last else 1,
            activation=activation, y=y)
        if input_grad:
            xp = array_module(x)
            sums = xp.stack([dbias, dweight]).astype(np.float64)
            distributed.all_reduce(sums)
            # dx = w invstd (dy - sum(dy) / n - xhat sum(dy xhat) / n): subtract the two means' terms
            scale = invstd.astype(np.float64) * (1.0 if w is None else w.astype(np.float64))
            k1 = scale * invstd * sums[1] / n
            k0 = scale * sums[0] / n
            shape = [1] * x.ndim
            shape[-1 if self.channels_last else 1] = self.num_features
            t = x - mean.reshape(shape)
            t *= k1.astype(x.dtype).reshape(shape)
            t += k0.astype(x.dtype).reshape(shape)
            dx -= t
        if weight is not None and weight.requires_grad:
            weight._accumulate(dweight)
        if self.bias is not None and self.bias.requires_grad:
            self.bias._accumulate(dbias)
        return dx if input_grad else None
