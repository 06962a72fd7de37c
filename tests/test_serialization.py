"""fastnn.save / fastnn.load: model and optimizer state dicts round trip through .npz
(eval outputs bitwise equal, training resumes bit for bit), nothing is pickled, and bad
objects or files are refused."""

import io
import zipfile

import numpy as np
import pytest

import fastnn
from fastnn import nn, optim


def model():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(16, 6), nn.BatchNorm1d(6, momentum=None), nn.PReLU(),
                         nn.Linear(6, 3))


def train(m, opt, steps, seed):
    rng = np.random.default_rng(seed)
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    for _ in range(steps):
        x = rng.standard_normal((8, 2, 4, 4)).astype(np.float32)
        y = rng.integers(0, 3, 8)
        opt.zero_grad()
        losses.append(loss_fn(m(x), y))
        m.backward(loss_fn.backward())
        opt.step()
    return losses


def test_checkpoint_round_trip_resumes_bit_for_bit(tmp_path):
    fastnn.random.seed(3)
    a = model()
    opt_a = optim.AdamW(a.parameters(), lr=1e-2)
    train(a, opt_a, 3, seed=0)
    path = tmp_path / "checkpoint.pt"
    fastnn.save({"model": a.state_dict(), "optimizer": opt_a.state_dict(), "epoch": 3}, path)
    assert path.exists() and not (tmp_path / "checkpoint.pt.npz").exists()  # the name as given

    ckpt = fastnn.load(path)
    assert ckpt["epoch"] == 3
    b = model()
    opt_b = optim.AdamW(b.parameters(), lr=1e-2)
    b.load_state_dict(ckpt["model"])
    opt_b.load_state_dict(ckpt["optimizer"])
    for key, value in a.state_dict().items():
        assert ckpt["model"][key].dtype == value.dtype and np.array_equal(ckpt["model"][key], value), key
    x = np.random.default_rng(9).standard_normal((5, 2, 4, 4)).astype(np.float32)
    a.eval()
    b.eval()
    assert np.array_equal(a(x), b(x))
    a.train()
    b.train()
    assert [float(v) for v in train(a, opt_a, 3, seed=1)] == [float(v) for v in train(b, opt_b, 3, seed=1)]


def test_nested_values_and_file_objects():
    obj = {"a": [1, 2.5, "s", None, True], "t": (np.float32(1.5), np.arange(3)), 7: {"deep": np.ones((2, 2))},
           "empty": {}, "inf": float("inf")}
    buf = io.BytesIO()
    fastnn.save(obj, buf)
    buf.seek(0)
    back = fastnn.load(buf)
    assert back["a"] == [1, 2.5, "s", None, True]
    assert isinstance(back["t"], tuple) and back["t"][0] == np.float32(1.5)
    assert type(back["t"][0]) is np.float32 and np.array_equal(back["t"][1], np.arange(3))
    assert np.array_equal(back[7]["deep"], np.ones((2, 2))) and back["empty"] == {} and back["inf"] == float("inf")
    buf.seek(0)
    with np.load(buf) as plain:  # readable without fastnn: arrays are members named by their path
        assert "7/deep" in plain.files and "t/1" in plain.files


def test_a_plain_npz_loads_as_a_dict(tmp_path):
    path = tmp_path / "plain.npz"
    np.savez(path, w=np.ones(3), b=np.zeros(2))
    back = fastnn.load(path)
    assert set(back) == {"w", "b"} and np.array_equal(back["w"], np.ones(3))


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, w=np.ones(3), payload=np.array([{"x": 1}], dtype=object))
    with pytest.raises(ValueError, match="'payload' is an object array; fastnn.load never unpickles"):
        fastnn.load(path)
    out = tmp_path / "never.npz"
    with pytest.raises(TypeError, match="cannot save bad: an array of dtype object"):
        fastnn.save({"bad": np.array([None, 1], dtype=object)}, out)
    assert not out.exists()  # nothing written


def test_unsupported_objects_name_where_they_are(tmp_path):
    out = tmp_path / "x.npz"
    with pytest.raises(TypeError, match="cannot save model/layer: a Linear"):
        fastnn.save({"model": {"layer": nn.Linear(2, 2)}}, out)
    with pytest.raises(TypeError, match="dict keys must be str or int"):
        fastnn.save({(1, 2): 3}, out)
    assert not out.exists()


def test_not_an_npz(tmp_path):
    path = tmp_path / "one.npy"
    np.save(path, np.ones(2))
    with pytest.raises(ValueError, match="not a .npz file"):
        fastnn.load(path)
    junk = tmp_path / "junk.npz"
    with zipfile.ZipFile(junk, "w") as z:
        z.writestr("a.txt", "hello")
    with pytest.raises(ValueError, match="'a.txt' is not a .npy array"):
        fastnn.load(junk)


def test_parameters_save_as_their_arrays(tmp_path):
    layer = nn.Linear(3, 2)
    fastnn.save({"w": layer.weight}, tmp_path / "p.npz")
    assert np.array_equal(fastnn.load(tmp_path / "p.npz")["w"], layer.weight.data)
