"""fastnn.data: Standardizer, PCA and ZCA against NumPy formulas in float64; DataLoader
coverage, order and seeds; augmentations (shapes, dtypes, reproducibility, each against
a direct reference); test-time augmentation against a hand-made average."""

import numpy as np
import pytest

import fastnn
from fastnn import nn
from fastnn.data import (PCA, ZCA, ColorJitter, Compose, DataLoader, GaussianNoise, RandomCrop,
                         RandomHorizontalFlip, Standardizer, tta_predict)


def correlated(n=400, d=6, seed=0):
    """float64 samples with a full-rank, far from diagonal covariance and a nonzero mean."""
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d))
    return rng.standard_normal((n, d)) @ mix + rng.uniform(-5, 5, d)


def np_cov(x):
    return np.cov(x.reshape(len(x), -1), rowvar=False)  # (n - 1) normalization


# ---------------------------------------------------------------------- Standardizer


def test_standardizer_per_feature_matches_numpy():
    x = correlated()
    s = Standardizer().fit(x)
    np.testing.assert_allclose(s.mean_[0], x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(s.std_[0], x.std(axis=0), rtol=1e-14)
    z = s.transform(x)
    np.testing.assert_allclose(z, (x - x.mean(axis=0)) / x.std(axis=0), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-13)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-13)
    np.testing.assert_allclose(s.inverse_transform(z), x, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_standardizer_per_channel(layout):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20, 3, 5, 4)) * [[[2.0]], [[0.5]], [[7.0]]] + [[[1.0]], [[-3.0]], [[10.0]]]
    axes = (0, 2, 3)
    if layout == "nhwc":
        x, axes = np.ascontiguousarray(x.transpose(0, 2, 3, 1)), (0, 1, 2)
    s = Standardizer(axis=axes).fit(x)
    channel = 1 if layout == "nchw" else 3
    assert s.mean_.shape == tuple(3 if a == channel else 1 for a in range(4))
    np.testing.assert_allclose(s.mean_, x.mean(axis=axes, keepdims=True), rtol=1e-14)
    np.testing.assert_allclose(s.std_, x.std(axis=axes, keepdims=True), rtol=1e-14)
    z = s.transform(x[:7])  # another split, another N
    np.testing.assert_allclose(z, (x[:7] - x.mean(axis=axes, keepdims=True)) / x.std(axis=axes, keepdims=True),
                               rtol=1e-13, atol=1e-13)


def test_standardizer_statistics_come_from_the_training_split_only():
    rng = np.random.default_rng(2)
    train, test = rng.normal(3.0, 2.0, (500, 4)), rng.normal(-1.0, 5.0, (100, 4))
    s = Standardizer().fit(train)
    np.testing.assert_allclose(s.transform(test), (test - train.mean(0)) / train.std(0), rtol=1e-13)


def test_standardizer_global_constant_feature_and_float32():
    x = np.random.default_rng(3).standard_normal((50, 4)).astype(np.float32)
    x[:, 2] = 7.0  # constant: centred, not divided by 0
    s = Standardizer().fit(x)
    assert s.std_[0, 2] == 1.0
    z = s.transform(x)
    assert z.dtype == np.float32 and np.all(z[:, 2] == 0)
    x64 = x.astype(np.float64)  # statistics of float32 data are taken in float64
    np.testing.assert_allclose(s.mean_[0], x64.mean(0), rtol=1e-15)
    g = Standardizer(axis=None).fit(x)
    assert g.mean_.shape == (1, 1)
    np.testing.assert_allclose(g.mean_[0, 0], x64.mean(), rtol=1e-14)
    np.testing.assert_allclose(g.std_[0, 0], x64.std(), rtol=1e-14)


def test_standardizer_errors_and_refused_calls_keep_the_fit():
    s = Standardizer()
    with pytest.raises(RuntimeError, match="not fitted"):
        s.transform(np.ones((2, 3)))
    with pytest.raises(TypeError, match="float32 or float64"):
        s.fit(np.ones((4, 3), np.int64))
    with pytest.raises(TypeError, match="x must be an array"):
        s.fit([[1.0, 2.0]])
    with pytest.raises(TypeError, match="axis"):
        Standardizer(axis="channels")
    with pytest.raises(ValueError, match="out of range"):
        Standardizer(axis=4).fit(np.ones((2, 3)))
    x = correlated()
    s.fit(x)
    mean = s.mean_.copy()
    with pytest.raises(ValueError, match="fitted on shape"):
        s.transform(np.ones((3, 5)))
    with pytest.raises(ValueError, match="no values"):
        s.fit(np.ones((0, 6)))
    np.testing.assert_array_equal(s.mean_, mean)


def test_standardizer_state_saved_with_the_model(tmp_path):
    x = np.random.default_rng(4).standard_normal((30, 2, 3, 3)).astype(np.float32) * 4 + 1
    s = Standardizer(axis=(0, 2, 3)).fit(x)
    fastnn.random.seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(18, 3))
    path = tmp_path / "model.npz"
    fastnn.save({"model": model.state_dict(), "standardizer": s.state_dict()}, path)
    ckpt = fastnn.load(path)
    restored = Standardizer().load_state_dict(ckpt["standardizer"])
    np.testing.assert_array_equal(restored.transform(x), s.transform(x))
    fresh = nn.Sequential(nn.Flatten(), nn.Linear(18, 3))
    fresh.load_state_dict(ckpt["model"])
    np.testing.assert_array_equal(fresh(restored.transform(x)), model(s.transform(x)))
    before = restored.mean_.copy()
    with pytest.raises(ValueError, match="unexpected key"):
        restored.load_state_dict({"mean": before, "std": before, "other": before})
    with pytest.raises(ValueError, match="std must be > 0"):
        restored.load_state_dict({"mean": before, "std": np.zeros_like(before)})
    np.testing.assert_array_equal(restored.mean_, before)


# --------------------------------------------------------------------------- PCA, ZCA


def test_pca_matches_the_covariance_eigendecomposition():
    x = correlated()
    pca = PCA().fit(x)
    values, vectors = np.linalg.eigh(np_cov(x))
    order = np.argsort(values)[::-1]
    np.testing.assert_allclose(pca.explained_variance_, values[order], rtol=1e-10)
    np.testing.assert_allclose(pca.explained_variance_ratio_, values[order] / values.sum(), rtol=1e-10)
    for k, i in enumerate(order):  # the same directions, sign fixed by the largest entry
        v = vectors[:, i] * np.sign(vectors[np.argmax(np.abs(vectors[:, i])), i])
        np.testing.assert_allclose(pca.components_[k], v, atol=1e-10)
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(6), atol=1e-12)
    z = pca.transform(x)
    np.testing.assert_allclose(z, (x - x.mean(0)) @ pca.components_.T, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(np_cov(z), np.diag(values[order]), atol=1e-10)
    np.testing.assert_allclose(pca.inverse_transform(z), x, rtol=1e-12, atol=1e-11)


def test_pca_whitened_covariance_is_the_identity():
    x = correlated(d=8)
    z = PCA(whiten=True).fit(x).transform(x)
    np.testing.assert_allclose(np_cov(z), np.eye(8), atol=1e-10)
    z3 = PCA(n_components=3, whiten=True).fit(x).transform(x)
    assert z3.shape == (len(x), 3)
    np.testing.assert_allclose(np_cov(z3), np.eye(3), atol=1e-10)
    np.testing.assert_allclose(z3, z[:, :3], atol=1e-10)


def test_pca_projection_of_images_and_dtype():
    x = correlated(n=300, d=16).reshape(300, 1, 4, 4).astype(np.float32)
    pca = PCA(n_components=5).fit(x)
    z = pca.transform(x)
    assert z.shape == (300, 5) and z.dtype == np.float32
    back = pca.inverse_transform(z)
    assert back.shape == x.shape and back.dtype == np.float32
    # projecting the reconstruction again changes nothing (it lies in the kept subspace)
    np.testing.assert_allclose(pca.transform(back), z, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="n_components=17"):
        PCA(17).fit(x)


def test_pca_refused_fit_keeps_the_earlier_one():
    x = correlated()
    pca = PCA(whiten=True).fit(x)
    comps = pca.components_.copy()
    singular = np.c_[x, x[:, :1]]  # a direction with zero variance
    with pytest.raises(ValueError, match="zero variance"):
        pca.fit(singular)
    np.testing.assert_array_equal(pca.components_, comps)
    assert PCA(whiten=True, eps=1e-6).fit(singular).transform(singular).shape == singular.shape


def test_zca_matches_the_formula_and_whitens():
    x = correlated(d=5)
    eps = 1e-3
    zca = ZCA(eps=eps).fit(x)
    values, u = np.linalg.eigh(np_cov(x))
    w = u @ np.diag(1 / np.sqrt(values + eps)) @ u.T
    np.testing.assert_allclose(zca.whitening_, w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(zca.transform(x), (x - x.mean(0)) @ w, rtol=1e-10, atol=1e-11)
    exact = ZCA(eps=0).fit(x)
    z = exact.transform(x)
    np.testing.assert_allclose(np_cov(z), np.eye(5), atol=1e-10)
    np.testing.assert_allclose(exact.whitening_, exact.whitening_.T, atol=1e-12)  # symmetric
    np.testing.assert_allclose(exact.inverse_transform(z), x, rtol=1e-11, atol=1e-10)


def test_zca_keeps_image_shape_and_state_round_trips(tmp_path):
    x = correlated(n=200, d=12).reshape(200, 3, 2, 2)
    zca = ZCA(eps=0).fit(x)
    z = zca.transform(x)
    assert z.shape == x.shape
    np.testing.assert_allclose(np_cov(z), np.eye(12), atol=1e-10)
    fastnn.save({"zca": zca.state_dict()}, tmp_path / "zca.npz")
    again = ZCA().load_state_dict(fastnn.load(tmp_path / "zca.npz")["zca"])
    assert again.eps == 0
    np.testing.assert_allclose(again.transform(x), z, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="singular"):
        again.fit(np.c_[x.reshape(200, -1), np.zeros(200)])
    np.testing.assert_allclose(again.transform(x), z, rtol=1e-12, atol=1e-12)  # the refused fit moved nothing
    with pytest.raises(ValueError, match="features per sample"):
        again.transform(np.ones((2, 11)))


def test_pca_state_round_trips(tmp_path):
    x = correlated()
    pca = PCA(3, whiten=True).fit(x)
    fastnn.save(pca.state_dict(), tmp_path / "pca.npz")
    again = PCA().load_state_dict(fastnn.load(tmp_path / "pca.npz"))
    assert again.whiten and again.n_components == 3
    np.testing.assert_array_equal(again.transform(x), pca.transform(x))


# ------------------------------------------------------------------------ DataLoader


def test_dataloader_covers_every_sample_once_per_epoch():
    n = 103
    x = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    y = np.arange(n)
    loader = DataLoader(x, y, 10, generator=0)
    assert len(loader) == 11
    orders = []
    for _ in range(3):
        batches = list(loader)
        assert [len(b[1]) for b in batches] == [10] * 10 + [3]
        seen = np.concatenate([yb for _, yb in batches])
        np.testing.assert_array_equal(np.sort(seen), y)  # each sample exactly once
        for xb, yb in batches:  # x and y stay paired
            np.testing.assert_array_equal(xb[:, 0], yb.astype(np.float32))
            assert xb.flags.c_contiguous
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])


def test_dataloader_same_seed_same_order():
    x, y = np.random.default_rng(0).standard_normal((50, 2)), np.arange(50)
    a, b = DataLoader(x, y, 8, generator=42), DataLoader(x, y, 8, generator=42)
    for _ in range(3):
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(ya, yb)
            np.testing.assert_array_equal(xa, xb)
    fastnn.random.seed(5)
    c = [yb for _, yb in DataLoader(x, y, 8)]
    fastnn.random.seed(5)
    d = [yb for _, yb in DataLoader(x, y, 8)]
    assert all(np.array_equal(p, q) for p, q in zip(c, d))
    other = [yb for _, yb in DataLoader(x, y, 8, generator=43)]
    assert not all(np.array_equal(p, q) for p, q in zip(c, other))


def test_dataloader_drop_last_no_shuffle_views_and_x_only():
    x = np.arange(20.0).reshape(10, 2)
    loader = DataLoader(x, np.arange(10), 4, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(loader) == 2 and len(batches) == 2
    np.testing.assert_array_equal(batches[1][1], [4, 5, 6, 7])
    assert np.shares_memory(batches[0][0], x)  # views, no copy
    only_x = list(DataLoader(x, batch_size=3, shuffle=False))
    assert len(only_x) == 4 and only_x[-1].shape == (1, 2)


def test_dataloader_sampler_and_transform():
    x, y = np.arange(12.0)[:, None], np.arange(12)

    class EveryOther:
        def __iter__(self):
            return iter(range(0, 12, 2))

        def __len__(self):
            return 6

    loader = DataLoader(x, y, 4, shuffle=False, sampler=EveryOther(), transform=lambda b: b * 10)
    batches = list(loader)
    assert len(loader) == 2
    np.testing.assert_array_equal(np.concatenate([yb for _, yb in batches]), [0, 2, 4, 6, 8, 10])
    np.testing.assert_array_equal(batches[0][0][:, 0], [0, 20, 40, 60])
    with pytest.raises(ValueError, match="shuffle=False"):
        DataLoader(x, y, 4, sampler=EveryOther())


def test_dataloader_with_a_distributed_sampler_in_fit():
    """Two ranks' loaders (no MPI needed: the ranks are given): disjoint shares covering
    the data, a new order every epoch because fit calls the sampler's set_epoch."""
    from fastnn.distributed import DistributedSampler
    from fastnn.train import fit

    x, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    seen = {0: [], 1: []}

    class Recorder(nn.Module):  # records the samples each epoch's batches hold
        def __init__(self, rank):
            super().__init__()
            self.rank = rank
            self.lin = nn.Linear(2, 2).double()

        def forward(self, xb):
            seen[self.rank].append((xb[:, 0] / 2).astype(int))
            return self.lin(xb)

        def backward(self, dy, *, input_grad=True):
            return self.lin.backward(dy, input_grad=input_grad)

    for rank in (0, 1):
        sampler = DistributedSampler(20, num_replicas=2, rank=rank, seed=3)
        loader = DataLoader(x, y, 4, shuffle=False, sampler=sampler)
        model = Recorder(rank)
        fit(model, nn.CrossEntropyLoss(), fastnn.optim.SGD(model.parameters(), lr=0.0), loader, epochs=2,
            progress=False)
        assert sampler.epoch == 1
    epochs = {r: [np.concatenate(seen[r][:3]), np.concatenate(seen[r][3:])] for r in (0, 1)}
    for e in (0, 1):
        assert sorted(np.concatenate([epochs[0][e], epochs[1][e]]).tolist()) == list(range(20))
    assert not np.array_equal(epochs[0][0], epochs[0][1])


def test_dataloader_errors():
    x = np.ones((5, 2))
    with pytest.raises(ValueError, match="same number of samples"):
        DataLoader(x, np.arange(4))
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        DataLoader(x, batch_size=0)
    with pytest.raises(TypeError, match="shuffle must be a bool"):
        DataLoader(x, shuffle="yes")
    with pytest.raises(TypeError, match="generator"):
        DataLoader(x, generator="seed")
    with pytest.raises(TypeError, match="x must be an array"):
        DataLoader([1, 2, 3])


# ----------------------------------------------------------------------- augmentation


def images(layout, dtype, n=16, seed=0):
    x = np.random.default_rng(seed).standard_normal((n, 3, 6, 5)).astype(dtype)
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "nhwc" else x


AUGMENTATIONS = {
    "flip": lambda cl, g: RandomHorizontalFlip(channels_last=cl, generator=g),
    "crop": lambda cl, g: RandomCrop((6, 5), 2, channels_last=cl, generator=g),
    "smaller_crop": lambda cl, g: RandomCrop(4, channels_last=cl, generator=g),
    "jitter": lambda cl, g: ColorJitter(0.4, 0.4, channels_last=cl, generator=g),
    "noise": lambda cl, g: GaussianNoise(0.1, channels_last=cl, generator=g),
    "compose": lambda cl, g: Compose([RandomCrop((6, 5), 1, channels_last=cl, generator=g),
                                      RandomHorizontalFlip(channels_last=cl, generator=g + 1)]),
}


@pytest.mark.parametrize("name", AUGMENTATIONS)
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_augmentations_keep_shape_dtype_and_repeat_with_a_seed(name, layout, dtype):
    x = images(layout, dtype)
    original = x.copy()
    cl = layout == "nhwc"
    a, b = AUGMENTATIONS[name](cl, 7), AUGMENTATIONS[name](cl, 7)
    ya = a(x)
    expected = x.shape
    if name == "smaller_crop":
        expected = (16, 4, 4, 3) if cl else (16, 3, 4, 4)
    assert ya.shape == expected and ya.dtype == dtype and ya.flags.c_contiguous
    np.testing.assert_array_equal(x, original)  # the input is never written
    np.testing.assert_array_equal(b(x), ya)  # same seed, same batch
    assert not np.array_equal(a(x), ya)  # the generator moves on: the next batch differs


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_flip_twice_is_the_identity_and_flips_along_width(layout):
    x = images(layout, np.float32, n=200)
    cl = layout == "nhwc"
    f1 = RandomHorizontalFlip(channels_last=cl, generator=3)
    f2 = RandomHorizontalFlip(channels_last=cl, generator=3)
    once = f1(x)
    np.testing.assert_array_equal(f2(once), x)  # the same draws flip the same images back
    mirrored = x[:, :, ::-1, :] if cl else x[..., ::-1]
    flipped = [not np.array_equal(once[i], x[i]) for i in range(len(x))]
    for i in range(len(x)):
        np.testing.assert_array_equal(once[i], mirrored[i] if flipped[i] else x[i])
    assert 70 < sum(flipped) < 130  # p = 0.5
    always = RandomHorizontalFlip(1.0, channels_last=cl)
    np.testing.assert_array_equal(always(always(x)), x)
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0, channels_last=cl)(x), x)


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
def test_random_crop_cuts_a_window_of_the_padded_image(layout):
    cl = layout == "nhwc"
    x = images(layout, np.float64, n=30)
    out = RandomCrop((6, 5), padding=2, fill=-9.0, channels_last=cl, generator=1)(x)
    as_nchw = (lambda a: a.transpose(0, 3, 1, 2)) if cl else (lambda a: a)
    xs, outs = as_nchw(x), as_nchw(out)
    padded = np.pad(xs, ((0, 0), (0, 0), (2, 2), (2, 2)), constant_values=-9.0)
    offsets = set()
    for i in range(len(x)):  # brute force: the output is exactly one window of the padded image
        matches = [(t, l) for t in range(5) for l in range(5)
                   if np.array_equal(padded[i, :, t:t + 6, l:l + 5], outs[i])]
        assert matches, i
        offsets.add(matches[0])
    assert len(offsets) > 5
    with pytest.raises(ValueError, match="larger than the padded image"):
        RandomCrop(11, padding=2, channels_last=cl)(x)


def test_color_jitter_and_noise_against_their_definitions():
    x = images("nchw", np.float64, n=40)
    b = ColorJitter(brightness=0.3, generator=0)(x)
    factor = (b / x).reshape(40, -1)
    np.testing.assert_allclose(factor, factor[:, :1] * np.ones_like(factor), rtol=1e-12)  # one factor per image
    assert np.all((factor >= 0.7) & (factor <= 1.3)) and np.ptp(factor[:, 0]) > 0.1
    c = ColorJitter(contrast=0.5, generator=0)(x)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(c.mean(axis=(1, 2, 3), keepdims=True), mean, atol=1e-12)  # the mean stays
    scale = ((c - mean) / (x - mean)).reshape(40, -1)
    np.testing.assert_allclose(scale, scale[:, :1] * np.ones_like(scale), rtol=1e-9)
    assert np.all((scale >= 0.5) & (scale <= 1.5))
    big = np.zeros((8, 3, 64, 64), np.float32)
    noise = GaussianNoise(0.25, generator=0)(big)
    assert abs(noise.std() - 0.25) < 0.005 and abs(noise.mean()) < 0.005


def test_augmentation_errors_move_no_generator():
    flip = RandomHorizontalFlip(generator=0)
    state = flip.generator.bit_generator.state
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        flip(np.ones((3, 4, 4), np.float32))
    with pytest.raises(TypeError, match="float32 or float64"):
        flip(np.ones((1, 1, 4, 4), np.int32))
    assert flip.generator.bit_generator.state == state
    with pytest.raises(ValueError, match="p must be in"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="brightness"):
        ColorJitter(brightness=-1)
    with pytest.raises(TypeError, match="not callable"):
        Compose([RandomHorizontalFlip(), 3])


def test_tta_predict_averages_softmax_over_views():
    fastnn.random.seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                          nn.Linear(4 * 6 * 5, 3)).double()
    x = images("nchw", np.float64, n=5)
    model.train()

    def probs(v):
        model.eval()
        z = model(v)
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    expected = (probs(x) + probs(x[..., ::-1].copy())) / 2
    model.train()
    got = tta_predict(model, x)
    assert model.training  # modes restored
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    shifted = np.zeros_like(x)
    shifted[:, :, 1:, :] = x[:, :, :-1, :]  # moved down by one pixel
    views = tta_predict(model, x, flip=False, shift=1)
    down = probs(shifted)
    up, right, left = (np.zeros_like(x) for _ in range(3))
    up[:, :, :-1] = x[:, :, 1:]
    right[..., 1:] = x[..., :-1]
    left[..., :-1] = x[..., 1:]
    np.testing.assert_allclose(views, (probs(x) + down + probs(up) + probs(right) + probs(left)) / 5, rtol=1e-12)
