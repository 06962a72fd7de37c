"""The training tools on CuPy arrays (marker ``cuda``; skipped without CuPy and a GPU):
preprocessing, batches and augmentation give the CPU's results for the same seed, fit
follows the CPU run, and the demo trains on the GPU."""

import json

import numpy as np
import pytest

import fastnn
from _gpu import require_cuda
from fastnn import nn, optim
from fastnn.data import (PCA, ZCA, ColorJitter, DataLoader, GaussianNoise, RandomCrop, RandomHorizontalFlip,
                         Standardizer)
from fastnn.train import EarlyStopping, check_initial_loss, fit, mc_predict, predict

pytestmark = pytest.mark.cuda
cp = require_cuda()  # the whole module needs CuPy and a GPU


def correlated(n=400, d=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) + rng.uniform(-5, 5, d)


@pytest.mark.parametrize("make", [Standardizer, lambda: PCA(3, whiten=True), lambda: ZCA(eps=1e-3)],
                         ids=["standardizer", "pca", "zca"])
def test_preprocessing_on_the_gpu_matches_the_cpu(make):
    x = correlated()
    on_cpu, on_gpu = make().fit(x), make().fit(cp.asarray(x))
    z = on_gpu.transform(cp.asarray(x))
    assert isinstance(z, cp.ndarray)
    np.testing.assert_allclose(cp.asnumpy(z), on_cpu.transform(x), rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cp.asnumpy(on_cpu.transform(cp.asarray(x))), on_cpu.transform(x), rtol=1e-12,
                               atol=1e-12)  # fitted on the CPU, applied on the GPU
    if not isinstance(on_gpu, PCA):
        np.testing.assert_allclose(cp.asnumpy(on_gpu.inverse_transform(z)), x, rtol=1e-9, atol=1e-9)
    assert all(isinstance(v, (np.ndarray, float, bool)) for v in on_gpu.state_dict().values())


def test_batches_and_augmentations_are_the_cpus_for_the_same_seed():
    x = np.random.default_rng(0).standard_normal((37, 3, 8, 8)).astype(np.float32)
    y = np.arange(37)
    for (xa, ya), (xb, yb) in zip(DataLoader(x, y, 8, generator=3), DataLoader(cp.asarray(x), cp.asarray(y), 8,
                                                                                   generator=3)):
        assert isinstance(xb, cp.ndarray)
        np.testing.assert_array_equal(cp.asnumpy(yb), ya)
        np.testing.assert_array_equal(cp.asnumpy(xb), xa)
    for make in (lambda: RandomHorizontalFlip(generator=7), lambda: RandomCrop(8, 2, generator=7),
                 lambda: ColorJitter(0.3, 0.3, generator=7), lambda: GaussianNoise(0.2, generator=7)):
        want, got = make()(x), make()(cp.asarray(x))
        assert isinstance(got, cp.ndarray) and got.dtype == x.dtype and got.shape == want.shape
        np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-6, atol=1e-6)


def test_fit_on_the_gpu_follows_the_cpu():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((120, 10)), rng.integers(0, 3, 120)
    fastnn.random.seed(0)
    cpu_model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                              nn.Linear(32, 3)).double()
    gpu_model = nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2),
                              nn.Linear(32, 3)).double()
    gpu_model.load_state_dict(cpu_model.state_dict())
    gpu_model[3].generator.set_state(cpu_model[3].generator.get_state())  # the same dropout masks
    gpu_model.to("cuda")
    check = check_initial_loss(gpu_model, nn.CrossEntropyLoss(), cp.asarray(x), cp.asarray(y))
    assert check.loss == pytest.approx(check_initial_loss(cpu_model, nn.CrossEntropyLoss(), x, y).loss, rel=1e-9)
    histories = []
    for model, xs, ys in ((cpu_model, x, y), (gpu_model, cp.asarray(x), cp.asarray(y))):
        opt = optim.AdamW(model.parameters(), lr=1e-2)
        histories.append(fit(model, nn.CrossEntropyLoss(), opt, DataLoader(xs, ys, 16, generator=0),
                             DataLoader(xs, ys, 64, shuffle=False), 4, early_stopping=EarlyStopping(10),
                             progress=False))
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(histories[1][key], histories[0][key], rtol=1e-8, err_msg=key)
    np.testing.assert_allclose(cp.asnumpy(predict(gpu_model, cp.asarray(x))), predict(cpu_model, x), rtol=1e-8,
                               atol=1e-10)
    mean, std = mc_predict(gpu_model, cp.asarray(x), 5)
    assert isinstance(mean, cp.ndarray) and np.allclose(cp.asnumpy(mean).sum(1), 1)


def test_demo_trains_on_the_gpu(tmp_path):
    pytest.importorskip("sklearn")
    from fastnn import cli

    assert cli.main(["demo", "--device", "cuda", "--epochs", "6", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["device"] == "cuda" and metrics["test_accuracy"] >= 0.95
    assert (tmp_path / "learning_curves.png").stat().st_size > 0
    assert isinstance(fastnn.load(tmp_path / "cnn.npz")["model"]["0.weight"], np.ndarray)
