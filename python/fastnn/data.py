"""Data tools for training: preprocessing fitted on the training split (``Standardizer``,
``PCA``, ``ZCA``), mini-batches (``DataLoader``), image augmentation and test-time
augmentation.

Everything works on NumPy arrays and takes the array module from its input, so CuPy
arrays go through the same code. Random numbers (shuffles, flips, crop offsets, jitter
and noise) come from a NumPy ``Generator`` on the host, so a seed gives the same
batches on either library.

Preprocessing objects have ``state_dict()`` / ``load_state_dict()`` holding plain arrays
and numbers, so they go into the same ``fastnn.save`` file as the model::

    scaler = Standardizer(axis=(0, 2, 3)).fit(x_train)   # per channel of NCHW images
    fastnn.save({"model": model.state_dict(), "scaler": scaler.state_dict()}, "digits.npz")
"""

import numbers

import numpy as np

from . import random as _random
from ._checks import check_bool
from .nn.module import array_module, check_float, check_int, is_array

__all__ = ["Standardizer", "PCA", "ZCA", "DataLoader", "RandomHorizontalFlip", "RandomCrop",
           "ColorJitter", "GaussianNoise", "Compose", "tta_predict"]


# ------------------------------------------------------------------- argument checks


def _check_array(x, name, min_ndim=1):
    if not is_array(x):
        raise TypeError(f"{name} must be an array (numpy.ndarray or cupy.ndarray), got {type(x).__name__}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {tuple(x.shape)}")
    return x


def _check_float_array(x, name, min_ndim=1):
    _check_array(x, name, min_ndim)
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name} must be float32 or float64, got {x.dtype}")
    return x


def make_generator(generator, name="generator"):
    """A numpy.random.Generator from ``generator=``: a Generator (used as is), an int seed,
    or None (seeded from fastnn.random's global generator, so ``fastnn.random.seed(s)``
    makes it reproducible)."""
    if isinstance(generator, np.random.Generator):
        return generator
    if generator is None:
        return np.random.default_rng(_random.fresh_seed())
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        if generator < 0:
            raise ValueError(f"{name} seed must be >= 0, got {generator}")
        return np.random.default_rng(int(generator))
    raise TypeError(f"{name} must be a numpy.random.Generator, an int seed or None, got "
                    f"{type(generator).__name__}")


def _normalize_axes(axis, ndim, name="axis"):
    """axis (None, an int or a tuple of ints) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, numbers.Integral) and not isinstance(axis, bool) else axis
    if not isinstance(axes, (tuple, list)) or not all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axes):
        raise TypeError(f"{name} must be None, an int or a tuple of ints, got {axis!r}")
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{name} {a} is out of range for an array of {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats an axis: {axis!r}")
    return tuple(sorted(out))


def _host(value):
    """A NumPy copy of an array of either library (state dicts hold NumPy arrays)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    return value.get()  # CuPy


def _state_array(state, key, owner):
    if key not in state:
        raise ValueError(f"{owner}.load_state_dict: missing key {key!r}")
    value = state[key]
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if not is_array(value):
        raise TypeError(f"{owner}.load_state_dict: {key!r} must be an array, got {type(value).__name__}")
    return np.asarray(value if isinstance(value, np.ndarray) else value.get(), dtype=np.float64)


def _plain(state, key, owner):
    if key not in state:
        raise ValueError(f"{owner}.load_state_dict: missing key {key!r}")
    value = state[key]
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value.item() if isinstance(value, np.generic) else value


def _unexpected_keys(state, allowed, owner):
    extra = [k for k in state if k not in allowed]
    if extra:
        raise ValueError(f"{owner}.load_state_dict: unexpected key(s) " + ", ".join(repr(k) for k in extra))


class _Fitted:
    """Base of the preprocessing classes: the fitted statistics live in float64 NumPy
    arrays; transforms compute in float64 with the input's array module and return the
    input's dtype."""

    mean_ = None

    def _check_fitted(self):
        if self.mean_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet: call fit(x_train) first")

    def _stat(self, name, xp):
        """A fitted array on the input's device (copied there once)."""
        value = getattr(self, name)
        if xp is np:
            return value
        cache = self.__dict__.setdefault("_device_cache", {})
        if name not in cache:
            cache[name] = xp.asarray(value)
        return cache[name]

    def _fitted(self):
        """Forget arrays copied to a device for an earlier fit."""
        self.__dict__.pop("_device_cache", None)

    def fit_transform(self, x):
        """fit(x), then transform(x)."""
        return self.fit(x).transform(x)


# -------------------------------------------------------------------- standardizing


class Standardizer(_Fitted):
    """``(x - mean) / std`` with statistics from the training split.

    ``axis`` names the axes the statistics are taken over, as in ``numpy.mean``: 0
    (the default) gives each feature of (N, D) data, or each pixel of images, its own
    mean and std; ``(0, 2, 3)`` one per channel of NCHW images, ``(0, 1, 2)`` per
    channel of NHWC; None one mean and std for everything. The std is the population
    one (``ddof=0``), computed in float64; a feature that is constant in the training
    data gets std 1 (it is only centred), as scikit-learn's ``StandardScaler`` does.

    ``fit(x_train)`` learns ``mean_`` and ``std_`` (float64, with the reduced axes kept
    as size 1, so they broadcast); ``transform(x)`` works on any split with the same
    sizes along the kept axes (any N) and returns x's dtype; ``inverse_transform(z)``
    undoes it."""

    def __init__(self, axis=0):
        if axis is not None:
            _normalize_axes(axis, 64)  # type check now; the range is checked against x in fit
        self.axis = tuple(axis) if isinstance(axis, list) else axis
        self.mean_ = None
        self.std_ = None

    def fit(self, x):
        """Learn the mean and std of x over ``axis``. Returns self."""
        _check_float_array(x, "x")
        axes = _normalize_axes(self.axis, x.ndim)
        if x.size == 0 or any(x.shape[a] == 0 for a in axes):
            raise ValueError(f"x has no values along axis {self.axis} (shape {tuple(x.shape)})")
        xp = array_module(x)
        x64 = x.astype(xp.float64)
        mean = x64.mean(axis=axes, keepdims=True)
        std = xp.sqrt(((x64 - mean) ** 2).mean(axis=axes, keepdims=True))
        std = xp.where(std > 0, std, 1.0)  # a constant feature is only centred
        self.mean_, self.std_ = _host(mean), _host(std)
        self._fitted()
        return self

    def _check_input(self, x, name):
        self._check_fitted()
        _check_float_array(x, name)
        shape = self.mean_.shape
        if x.ndim != len(shape) or any(s != 1 and s != xs for s, xs in zip(shape, x.shape)):
            expected = tuple("N" if s == 1 else s for s in shape)
            raise ValueError(f"{name} has shape {tuple(x.shape)} but the Standardizer was fitted on "
                             f"shape {expected} (N: any size along the axes it reduced)")
        return array_module(x)

    def transform(self, x):
        """(x - mean) / std, in x's dtype (computed in float64)."""
        xp = self._check_input(x, "x")
        z = (x.astype(xp.float64) - self._stat("mean_", xp)) / self._stat("std_", xp)
        return z.astype(x.dtype)

    def inverse_transform(self, z):
        """z * std + mean: the data transform was given."""
        xp = self._check_input(z, "z")
        return (z.astype(xp.float64) * self._stat("std_", xp) + self._stat("mean_", xp)).astype(z.dtype)

    def state_dict(self):
        """``{'mean': ..., 'std': ...}`` (float64 NumPy copies, reduced axes kept as size 1)."""
        self._check_fitted()
        return {"mean": self.mean_.copy(), "std": self.std_.copy()}

    def load_state_dict(self, state_dict):
        """Restore what ``state_dict()`` returned (also after ``fastnn.load``); ``axis``
        becomes the axes of size 1 in the arrays' shapes. Checks everything before changing anything."""
        _unexpected_keys(state_dict, ("mean", "std"), "Standardizer")
        mean = _state_array(state_dict, "mean", "Standardizer")
        std = _state_array(state_dict, "std", "Standardizer")
        if mean.shape != std.shape:
            raise ValueError(f"Standardizer.load_state_dict: mean has shape {mean.shape} but std has {std.shape}")
        if not np.all(std > 0):
            raise ValueError("Standardizer.load_state_dict: std must be > 0 everywhere")
        self.mean_, self.std_ = mean, std
        self.axis = tuple(i for i, s in enumerate(mean.shape) if s == 1)  # the axes the arrays reduced
        self._fitted()
        return self

    def __repr__(self):
        return f"Standardizer(axis={self.axis!r})"


# --------------------------------------------------------------------- PCA and ZCA


def _flat(x, name, features=None):
    """x (N, ...) as (N, D) (a view when x is C-contiguous)."""
    _check_float_array(x, name, 2)
    flat = x.reshape(x.shape[0], -1)
    if features is not None and flat.shape[1] != features:
        raise ValueError(f"{name} has {flat.shape[1]} features per sample (shape {tuple(x.shape)}) but "
                         f"the transform was fitted on {features}")
    return flat


class _Eigenbasis(_Fitted):
    """Centre, and the eigenvectors and eigenvalues of the training covariance (float64)."""

    def _fit_basis(self, x):
        """(mean, eigenvalues descending, eigenvectors as rows, sample shape) of x (N, ...)."""
        flat = _flat(x, "x")
        n, d = flat.shape
        if n < 2:
            raise ValueError(f"x needs at least 2 samples to estimate a covariance, got {n}")
        xp = array_module(x)
        x64 = flat.astype(xp.float64)
        mean = x64.mean(axis=0)
        centred = x64 - mean
        cov = centred.T @ centred / (n - 1)
        values, vectors = xp.linalg.eigh(cov)  # ascending
        values, vectors = values[::-1], vectors[:, ::-1]
        # A zero variance comes out of eigh as a rounding error of either sign (its size
        # and sign depend on the BLAS): below NumPy's matrix_rank tolerance it is 0.
        tol = float(values[0]) * d * np.finfo(np.float64).eps
        values = xp.where(values > tol, values, 0.0)
        # a fixed sign per component (its largest entry positive), so fits are reproducible
        signs = xp.sign(vectors[xp.argmax(xp.abs(vectors), axis=0), xp.arange(d)])
        vectors = vectors * xp.where(signs == 0, 1.0, signs)
        # (nothing is stored here, so a refused fit leaves an earlier one in place)
        return _host(mean), _host(values), _host(vectors.T), tuple(x.shape[1:])  # components as rows


class PCA(_Eigenbasis):
    """Principal component analysis fitted on training data x (N, ...) (flattened to
    (N, D)): ``transform(x)`` centres x with the training mean and projects it on the
    ``n_components`` directions of largest variance, giving (N, n_components). With
    ``whiten=True`` each component is also divided by ``sqrt(variance + eps)``, so the
    projected training data has the identity covariance (``eps=0``, the default, as
    scikit-learn; a small eps keeps near-zero directions from blowing up).

    Fitted: ``mean_`` (D,), ``components_`` (n_components, D) (orthonormal rows, each
    with its largest entry positive), ``explained_variance_`` (the covariance's
    eigenvalues with the ``n - 1`` normalization) and ``explained_variance_ratio_``.
    Computed in float64 from the covariance's eigendecomposition; results in x's dtype."""

    def __init__(self, n_components=None, whiten=False, eps=0.0):
        self.n_components = None if n_components is None else check_int(n_components, "n_components", 1)
        self.whiten = check_bool(whiten, "whiten")
        self.eps = check_float(eps, "eps")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")

    def fit(self, x):
        """Learn the mean and the principal directions of x (N, ...). Returns self."""
        d = _flat(x, "x").shape[1]
        k = d if self.n_components is None else self.n_components
        if k > d:
            raise ValueError(f"n_components={k} is more than the {d} features of x")
        mean, values, components, shape = self._fit_basis(x)
        if self.whiten and not np.all(values[:k] + self.eps > 0):
            raise ValueError(f"whiten=True with eps={self.eps}: a kept component has zero variance; "
                             "use eps > 0 or fewer components")
        total = values.sum()
        self._set(mean, shape, components[:k].copy(), values[:k].copy(),
                  values[:k] / total if total > 0 else np.zeros(k))
        return self

    def _set(self, mean, shape, components, variance, ratio):
        self.mean_, self._shape, self.components_ = mean, shape, components
        self.explained_variance_, self.explained_variance_ratio_ = variance, ratio
        self._whiten_scale = 1 / np.sqrt(variance + self.eps) if self.whiten else None
        self._fitted()

    def transform(self, x):
        """(N, ...) -> (N, n_components), in x's dtype."""
        self._check_fitted()
        flat = _flat(x, "x", self.mean_.size)
        xp = array_module(x)
        z = (flat.astype(xp.float64) - self._stat("mean_", xp)) @ self._stat("components_", xp).T
        if self.whiten:
            z *= self._stat("_whiten_scale", xp)
        return z.astype(x.dtype)

    def inverse_transform(self, z):
        """(N, n_components) -> (N, ...) of the fitted sample shape: the data's projection
        on the kept components, in z's dtype."""
        self._check_fitted()
        _check_float_array(z, "z", 2)
        k = self.components_.shape[0]
        if z.ndim != 2 or z.shape[1] != k:
            raise ValueError(f"z must have shape (N, {k}), got {tuple(z.shape)}")
        xp = array_module(z)
        z64 = z.astype(xp.float64)
        if self.whiten:
            z64 = z64 / self._stat("_whiten_scale", xp)
        x = z64 @ self._stat("components_", xp) + self._stat("mean_", xp)
        return x.reshape((z.shape[0],) + self._shape).astype(z.dtype)

    def state_dict(self):
        """Fitted arrays (float64 NumPy copies) and the settings."""
        self._check_fitted()
        return {"mean": self.mean_.copy(), "components": self.components_.copy(),
                "explained_variance": self.explained_variance_.copy(),
                "explained_variance_ratio": self.explained_variance_ratio_.copy(),
                "sample_shape": np.array(self._shape, np.int64),
                "whiten": self.whiten, "eps": self.eps}

    def load_state_dict(self, state_dict):
        """Restore what ``state_dict()`` returned; every check runs before anything changes."""
        keys = ("mean", "components", "explained_variance", "explained_variance_ratio", "sample_shape",
                "whiten", "eps")
        _unexpected_keys(state_dict, keys, "PCA")
        arrays = {k: _state_array(state_dict, k, "PCA") for k in keys[:5]}
        whiten, eps = _plain(state_dict, "whiten", "PCA"), _plain(state_dict, "eps", "PCA")
        whiten = check_bool(whiten, "whiten")
        comps, mean = arrays["components"], arrays["mean"]
        k = comps.shape[0] if comps.ndim == 2 else -1
        shape = tuple(int(s) for s in arrays["sample_shape"])
        if (mean.ndim != 1 or comps.ndim != 2 or comps.shape[1] != mean.size
                or arrays["explained_variance"].shape != (k,) or int(np.prod(shape)) != mean.size):
            raise ValueError("PCA.load_state_dict: the arrays' shapes do not fit together "
                             f"(mean {mean.shape}, components {comps.shape}, sample_shape {shape})")
        eps = check_float(eps, "eps")
        if not eps >= 0 or (whiten and not np.all(arrays["explained_variance"] + eps > 0)):
            raise ValueError("PCA.load_state_dict: eps must be >= 0 (and variance + eps > 0 with whiten)")
        self.whiten, self.eps, self.n_components = whiten, eps, k
        self._set(mean, shape, comps, arrays["explained_variance"], arrays["explained_variance_ratio"])
        return self

    def __repr__(self):
        return f"PCA(n_components={self.n_components}, whiten={self.whiten}, eps={self.eps})"


class ZCA(_Eigenbasis):
    """ZCA whitening fitted on training data x (N, ...): centre with the training mean,
    rotate into the covariance's eigenbasis, divide each direction by
    ``sqrt(eigenvalue + eps)`` and rotate back, ``W = U diag(1 / sqrt(lambda + eps)) U^T``.
    The result keeps x's shape and still looks like the input (edges stand out) while its
    covariance is (close to) the identity. ``eps`` (default 1e-5; scale it with your
    data's variance) keeps directions of almost no variance from being amplified into
    noise; ``eps=0`` gives exactly the identity covariance on the training data.

    Fitted: ``mean_`` (D,), ``components_`` (D, D) (eigenvectors as rows, largest
    eigenvalue first), ``eigenvalues_`` (D,), ``whitening_`` = W (D, D). float64 inside;
    results in x's dtype."""

    def __init__(self, eps=1e-5):
        self.eps = check_float(eps, "eps")
        if not self.eps >= 0:
            raise ValueError(f"eps must be >= 0, got {self.eps}")

    def fit(self, x):
        """Learn the mean and the whitening matrix of x (N, ...). Returns self."""
        mean, values, components, shape = self._fit_basis(x)
        if self.eps == 0 and not np.all(values > 0):
            raise ValueError("the training covariance is singular (a direction has zero variance); "
                             "use eps > 0")
        self.mean_, self._shape = mean, shape
        self._set_basis(components, values)
        return self

    def _set_basis(self, components, values):
        self.components_, self.eigenvalues_ = components, values
        u, root = components.T, np.sqrt(values + self.eps)
        self.whitening_ = (u / root) @ components
        self._coloring = (u * root) @ components  # W's inverse
        self._fitted()

    def transform(self, x):
        """(N, ...) -> whitened, the same shape and dtype."""
        self._check_fitted()
        flat = _flat(x, "x", self.mean_.size)
        xp = array_module(x)
        z = (flat.astype(xp.float64) - self._stat("mean_", xp)) @ self._stat("whitening_", xp)
        return z.reshape(x.shape).astype(x.dtype)

    def inverse_transform(self, z):
        """Undo the whitening (exact up to rounding when eps > 0 or the covariance is full rank)."""
        self._check_fitted()
        flat = _flat(z, "z", self.mean_.size)
        xp = array_module(z)
        x = flat.astype(xp.float64) @ self._stat("_coloring", xp) + self._stat("mean_", xp)
        return x.reshape(z.shape).astype(z.dtype)

    def state_dict(self):
        """Fitted arrays (float64 NumPy copies) and eps."""
        self._check_fitted()
        return {"mean": self.mean_.copy(), "components": self.components_.copy(),
                "eigenvalues": self.eigenvalues_.copy(), "sample_shape": np.array(self._shape, np.int64),
                "eps": self.eps}

    def load_state_dict(self, state_dict):
        """Restore what ``state_dict()`` returned; every check runs before anything changes."""
        keys = ("mean", "components", "eigenvalues", "sample_shape", "eps")
        _unexpected_keys(state_dict, keys, "ZCA")
        arrays = {k: _state_array(state_dict, k, "ZCA") for k in keys[:4]}
        eps = check_float(_plain(state_dict, "eps", "ZCA"), "eps")
        mean, comps = arrays["mean"], arrays["components"]
        shape = tuple(int(s) for s in arrays["sample_shape"])
        d = mean.size
        if mean.ndim != 1 or comps.shape != (d, d) or arrays["eigenvalues"].shape != (d,) \
                or int(np.prod(shape)) != d:
            raise ValueError("ZCA.load_state_dict: the arrays' shapes do not fit together "
                             f"(mean {mean.shape}, components {comps.shape}, sample_shape {shape})")
        if not eps >= 0 or not np.all(arrays["eigenvalues"] + eps > 0):
            raise ValueError("ZCA.load_state_dict: eigenvalues + eps must be > 0")
        self.mean_, self._shape, self.eps = mean, shape, eps
        self._set_basis(comps, arrays["eigenvalues"])
        return self

    def __repr__(self):
        return f"ZCA(eps={self.eps})"


# ----------------------------------------------------------------------- mini-batches


class DataLoader:
    """Mini-batches of arrays: ``for xb, yb in DataLoader(x, y, batch_size=64): ...``.

    x and y (optional; without it the loader yields x batches alone) are arrays with the
    samples along axis 0. Every ``iter()`` is an epoch: with ``shuffle=True`` (the
    default) it draws a new permutation from ``generator`` (a ``numpy.random.Generator``,
    an int seed, or None: seeded from ``fastnn.random``'s global generator), so the order
    differs every epoch and repeats for the same seed. A batch is one gather
    (``x[indices]``, a fresh C-contiguous array); with ``shuffle=False`` batches are
    slices of x (views, no copy). ``drop_last=True`` leaves out a last, smaller batch.

    ``sampler=``: an object whose ``iter()`` gives the indices of one epoch and whose
    ``len()`` is their count (or whose ``indices()`` gives them as an array, as
    ``fastnn.distributed.DistributedSampler``); it replaces the shuffling
    (``shuffle`` must then be False), and its ``set_epoch(epoch)``, if it has one, is
    called by ``fastnn.train.fit``. ``transform=``: a callable applied to each x batch
    (an augmentation). ``len(loader)`` is the number of batches per epoch."""

    def __init__(self, x, y=None, batch_size=64, shuffle=True, drop_last=False, *, generator=None,
                 sampler=None, transform=None):
        _check_array(x, "x")
        if y is not None:
            _check_array(y, "y")
            if y.shape[0] != x.shape[0]:
                raise ValueError(f"x and y must hold the same number of samples, got {x.shape[0]} and "
                                 f"{y.shape[0]}")
            if array_module(y) is not array_module(x):
                raise TypeError("x and y must be arrays of the same library (both NumPy or both CuPy)")
        self.batch_size = check_int(batch_size, "batch_size", 1)
        self.shuffle = check_bool(shuffle, "shuffle")
        self.drop_last = check_bool(drop_last, "drop_last")
        if sampler is not None:
            if shuffle:
                raise ValueError("sampler= gives the order of every epoch: pass shuffle=False with it")
            if not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
                raise TypeError(f"sampler must have __iter__ and __len__, got {type(sampler).__name__}")
        if transform is not None and not callable(transform):
            raise TypeError(f"transform must be callable, got {type(transform).__name__}")
        self.x, self.y = x, y
        self.sampler, self.transform = sampler, transform
        self.generator = make_generator(generator) if shuffle else None

    @property
    def num_samples(self):
        """Samples per epoch (the sampler's count when there is one)."""
        return len(self.sampler) if self.sampler is not None else self.x.shape[0]

    def __len__(self):
        n, b = self.num_samples, self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _epoch_indices(self):
        """This epoch's sample order (None: 0..N-1 in order, batches as slices)."""
        if self.sampler is not None:
            if hasattr(self.sampler, "indices"):  # fastnn.distributed.DistributedSampler: an array at once
                return np.asarray(self.sampler.indices(), dtype=np.int64)
            return np.fromiter(iter(self.sampler), dtype=np.int64, count=len(self.sampler))
        if self.shuffle:
            return self.generator.permutation(self.x.shape[0])
        return None

    def __iter__(self):
        return self._batches(self._epoch_indices())

    def _batches(self, order):
        x, y, b = self.x, self.y, self.batch_size
        xp = array_module(x)
        if order is not None and xp is not np:
            order = xp.asarray(order)  # one transfer per epoch
        for i in range(len(self)):
            if order is None:
                xb = x[i * b:(i + 1) * b]
                yb = None if y is None else y[i * b:(i + 1) * b]
            else:
                idx = order[i * b:(i + 1) * b]
                xb = x[idx]
                yb = None if y is None else y[idx]
            if self.transform is not None:
                xb = self.transform(xb)
            yield xb if y is None else (xb, yb)

    def __repr__(self):
        return (f"DataLoader({self.num_samples} samples, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")


# ----------------------------------------------------------------------- augmentation


class _Augmentation:
    """A random transform of a batch of images (N, C, H, W), or (N, H, W, C) with
    ``channels_last=True``: one draw per image from the transform's own generator, all
    images transformed by array operations at once. Returns a new array of x's shape
    (RandomCrop: size) and dtype; x is never written."""

    def __init__(self, channels_last, generator):
        self.channels_last = check_bool(channels_last, "channels_last")
        self.generator = make_generator(generator)

    def _check(self, x):
        _check_float_array(x, f"{type(self).__name__}: x")
        if x.ndim != 4:
            layout = "(N, H, W, C)" if self.channels_last else "(N, C, H, W)"
            raise ValueError(f"{type(self).__name__}: expected a batch of images {layout}, got shape "
                             f"{tuple(x.shape)}")
        return array_module(x)

    def _hw_axes(self):
        return (1, 2) if self.channels_last else (2, 3)

    def _per_image(self, values, xp, dtype):
        """(N,) host values as (N, 1, 1, 1) on x's device, in x's dtype."""
        return xp.asarray(values.astype(dtype)).reshape(-1, 1, 1, 1)

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"


def hflip(x, channels_last=False):
    """Every image of x (N, C, H, W) (or (N, H, W, C)) mirrored left-right, as a new array."""
    axis = 2 if check_bool(channels_last, "channels_last") else 3
    xp = array_module(_check_float_array(x, "x", 4))
    return xp.ascontiguousarray(xp.flip(x, axis=axis))


class RandomHorizontalFlip(_Augmentation):
    """Mirrors each image left-right with probability p (torchvision's name and default)."""

    def __init__(self, p=0.5, *, channels_last=False, generator=None):
        self.p = check_float(p, "p")
        if not 0 <= self.p <= 1:
            raise ValueError(f"p must be in [0, 1], got {self.p}")
        super().__init__(channels_last, generator)

    def __call__(self, x):
        xp = self._check(x)
        flip = self.generator.random(x.shape[0]) < self.p
        out = x.copy()
        idx = np.flatnonzero(flip)
        if idx.size:
            idx = idx if xp is np else xp.asarray(idx)
            out[idx] = xp.flip(x[idx], axis=self._hw_axes()[1])
        return out

    def extra_repr(self):
        return f"p={self.p}"


class RandomCrop(_Augmentation):
    """Pads each image by ``padding`` pixels of ``fill`` on every side, then cuts out a
    ``size`` (an int or (h, w)) window at a random position (torchvision's RandomCrop
    with constant padding). With padding p and size equal to the image's, the image moves
    by up to p pixels in each direction."""

    def __init__(self, size, padding=0, *, fill=0.0, channels_last=False, generator=None):
        from .nn.conv import pair

        self.size = pair(size, "size", 1)
        self.padding = check_int(padding, "padding", 0)
        self.fill = check_float(fill, "fill")
        super().__init__(channels_last, generator)

    def __call__(self, x):
        xp = self._check(x)
        ha, wa = self._hw_axes()
        p, (h, w) = self.padding, self.size
        hp, wp = x.shape[ha] + 2 * p, x.shape[wa] + 2 * p
        if h > hp or w > wp:
            raise ValueError(f"RandomCrop: size {self.size} is larger than the padded image "
                             f"({hp}, {wp})")
        n = x.shape[0]
        top = self.generator.integers(0, hp - h + 1, n)
        left = self.generator.integers(0, wp - w + 1, n)
        padded_shape = list(x.shape)
        padded_shape[ha], padded_shape[wa] = hp, wp
        padded = xp.full(padded_shape, self.fill, dtype=x.dtype)
        inner = [slice(None)] * 4
        inner[ha], inner[wa] = slice(p, p + x.shape[ha]), slice(p, p + x.shape[wa])
        padded[tuple(inner)] = x
        # every window position as a strided view (no copy), then one gather of N windows
        st = padded.strides
        if self.channels_last:  # (N, top, left, h, w, C)
            shape = (n, hp - h + 1, wp - w + 1, h, w, x.shape[3])
            strides = (st[0], st[1], st[2], st[1], st[2], st[3])
        else:  # (N, C, top, left, h, w)
            shape = (n, x.shape[1], hp - h + 1, wp - w + 1, h, w)
            strides = (st[0], st[1], st[2], st[3], st[2], st[3])
        view = xp.lib.stride_tricks.as_strided(padded, shape, strides)
        rows, top, left = (xp.arange(n), xp.asarray(top), xp.asarray(left))
        if self.channels_last:
            return view[rows, top, left]  # (N, h, w, C)
        return view[rows, :, top, left]  # advanced indices split by ':' go first: (N, C, h, w)

    def extra_repr(self):
        return f"size={self.size}, padding={self.padding}" + (f", fill={self.fill}" if self.fill else "")


class ColorJitter(_Augmentation):
    """Random brightness and contrast per image, as torchvision's ColorJitter does for
    these two: brightness multiplies the image by b ~ U[max(0, 1 - brightness),
    1 + brightness]; contrast then blends it with its mean, ``mean + c * (x - mean)``,
    c ~ U[max(0, 1 - contrast), 1 + contrast] (the mean over all of the image's
    pixels and channels). Always brightness first; no clipping, so it also works on
    standardized data (where brightness scales the deviation from 0)."""

    def __init__(self, brightness=0.0, contrast=0.0, *, channels_last=False, generator=None):
        self.brightness = check_float(brightness, "brightness")
        self.contrast = check_float(contrast, "contrast")
        for name in ("brightness", "contrast"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        super().__init__(channels_last, generator)

    def __call__(self, x):
        xp = self._check(x)
        n = x.shape[0]
        out = x.copy()
        if self.brightness:
            b = self.generator.uniform(max(0.0, 1 - self.brightness), 1 + self.brightness, n)
            out *= self._per_image(b, xp, x.dtype)
        if self.contrast:
            c = self._per_image(self.generator.uniform(max(0.0, 1 - self.contrast), 1 + self.contrast, n),
                                xp, x.dtype)
            mean = out.mean(axis=(1, 2, 3), keepdims=True)
            out -= mean
            out *= c
            out += mean
        return out

    def extra_repr(self):
        return f"brightness={self.brightness}, contrast={self.contrast}"


class GaussianNoise(_Augmentation):
    """Adds ``std * N(0, 1)`` noise to every element (drawn in x's dtype)."""

    def __init__(self, std=0.1, *, channels_last=False, generator=None):
        self.std = check_float(std, "std")
        if not self.std >= 0:
            raise ValueError(f"std must be >= 0, got {self.std}")
        super().__init__(channels_last, generator)

    def __call__(self, x):
        xp = self._check(x)
        noise = self.generator.standard_normal(x.shape, dtype=x.dtype)
        noise *= x.dtype.type(self.std)
        return x + (noise if xp is np else xp.asarray(noise))

    def extra_repr(self):
        return f"std={self.std}"


class Compose:
    """Applies transforms in order: ``Compose([RandomCrop(32, 4), RandomHorizontalFlip()])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"transforms[{i}] is not callable: {type(t).__name__}")

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def _shift(x, dy, dx, channels_last):
    """Images moved by (dy, dx) pixels (down, right), the uncovered edge filled with 0."""
    xp = array_module(x)
    ha, wa = (1, 2) if channels_last else (2, 3)
    out = xp.zeros_like(x)
    src, dst = [slice(None)] * 4, [slice(None)] * 4
    for axis, d in ((ha, dy), (wa, dx)):
        size = x.shape[axis]
        src[axis] = slice(max(0, -d), size - max(0, d))
        dst[axis] = slice(max(0, d), size - max(0, -d))
    out[tuple(dst)] = x[tuple(src)]
    return out


def tta_predict(model, x, *, flip=True, shift=0, channels_last=False, batch_size=256):
    """Test-time augmentation: the class probabilities (softmax of the model's outputs)
    averaged over views of each image: x itself, its mirror image (``flip=True``) and,
    with ``shift`` = s > 0, each of those moved by s pixels up, down, left and right
    (zero-filled). The model runs in eval mode (its modes are restored afterwards), in
    batches of ``batch_size``. Returns (N, classes) probabilities in x's dtype."""
    from .train import predict

    flip = check_bool(flip, "flip")
    shift = check_int(shift, "shift", 0)
    _check_float_array(x, "x", 4)
    views = [x]
    if flip:
        views.append(hflip(x, channels_last))
    if shift:
        moves = ((shift, 0), (-shift, 0), (0, shift), (0, -shift))
        views += [_shift(v, dy, dx, channels_last) for v in list(views) for dy, dx in moves]
    total = None
    for view in views:
        probs = predict(model, view, batch_size=batch_size, probabilities=True)
        total = probs if total is None else total + probs
    return total / len(views)
