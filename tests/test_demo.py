"""``fastnn demo`` (the main job) with fewer epochs: test accuracy, the files it writes,
and that the saved CNN and standardizer reproduce its test accuracy."""

import json
import sys

import numpy as np
import pytest

import fastnn
from fastnn import cli

pytest.importorskip("sklearn", reason="the demo needs the examples extra (scikit-learn)")
pytest.importorskip("matplotlib", reason="the demo needs the examples extra (matplotlib)")


def test_demo_trains_to_95_percent_and_writes_its_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["demo", "--epochs", "6", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "initial loss" in printed and "log(10) = 2.3026" in printed
    assert printed.count("epoch 1/6") == 2  # per-epoch progress for both models
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_accuracy"] >= 0.95
    assert metrics["models"]["mlp"]["test_accuracy"] >= 0.9
    assert 1 <= metrics["epochs"] <= 6 and metrics["seconds"] > 0
    assert (out / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"test accuracy {metrics['test_accuracy']:.2%}" in printed

    # the saved weights and standardizer give the same test accuracy on the raw images
    from fastnn.data import Standardizer
    from fastnn.demo import build_cnn, load_digits_data
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    ckpt = fastnn.load(out / "cnn.npz")
    model = build_cnn()
    model.load_state_dict(ckpt["model"])
    scaler = Standardizer().load_state_dict(ckpt["standardizer"])
    digits = load_digits()
    x = digits.images.astype(np.float32)[:, None]
    _, x_test, _, y_test = train_test_split(x, digits.target, test_size=0.2, random_state=0,
                                            stratify=digits.target)
    model.eval()
    acc = np.mean(model(scaler.transform(x_test)).argmax(1) == y_test)
    assert acc == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    # and the split's standardization used the training images only
    data = load_digits_data()
    train = data["standardizer"].inverse_transform(data["x_train"])
    np.testing.assert_allclose(scaler.mean_.ravel(), [train.astype(np.float64).mean()], rtol=1e-6)


def test_demo_says_what_is_missing(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    assert cli.main(["demo", "--out", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert "scikit-learn" in err and 'pip install ".[examples]"' in err
    assert not (tmp_path / "x").exists()


def test_demo_on_cuda_without_cupy_fails_clearly(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "cupy", None)
    assert cli.main(["demo", "--device", "cuda", "--epochs", "1", "--out", str(tmp_path / "y")]) == 1
    assert 'needs CuPy: pip install "fastnn[cuda]"' in capsys.readouterr().err
    assert not (tmp_path / "y").exists()  # refused before any work
