"""softmax_cross_entropy(logits, labels) -> (loss, probs) and its backward, against a
float64 NumPy reference (log-sum-exp), finite differences and torch's cross_entropy."""

import numpy as np
import pytest

from fastnn import functional as F

DTYPES = [np.float32, np.float64]


def reference(logits, labels):
    x = logits.astype(np.float64)
    m = x.max(axis=1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(x - m).sum(axis=1))
    loss = np.mean(lse - x[np.arange(len(x)), labels])
    return loss, np.exp(x - lse[:, None])


def make(n, k, dtype, scale=3.0, seed=0, label_dtype=np.int64):
    rng = np.random.default_rng(seed)
    logits = (rng.standard_normal((n, k)) * scale).astype(dtype)
    labels = rng.integers(0, k, n).astype(label_dtype)
    return logits, labels


@pytest.mark.parametrize("label_dtype", [np.int32, np.int64])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k", [(1, 1), (3, 5), (64, 10), (37, 1000), (5, 40000)])
def test_matches_reference(n, k, dtype, label_dtype):
    logits, labels = make(n, k, dtype, label_dtype=label_dtype)
    loss, probs = F.softmax_cross_entropy(logits, labels)
    ref_loss, ref_probs = reference(logits, labels)
    assert loss.shape == () and loss.dtype == dtype and probs.dtype == dtype
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=rtol)
    np.testing.assert_allclose(probs, ref_probs, rtol=4 * rtol, atol=1e-30)
    dl = F.softmax_cross_entropy_backward(probs, labels)
    onehot = np.zeros_like(ref_probs)
    onehot[np.arange(n), labels] = 1
    np.testing.assert_allclose(dl, (ref_probs - onehot) / n, rtol=8 * rtol, atol=rtol / n)


@pytest.mark.parametrize("dtype", DTYPES)
def test_stable_for_huge_logits(dtype):
    logits = np.array([[1000, -1000, 0, 999], [-1000, -1000, -1000, -999.5]], dtype)
    labels = np.array([3, 0])
    loss, probs = F.softmax_cross_entropy(logits, labels)
    ref_loss, ref_probs = reference(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(probs))
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-6, atol=1e-30)


def test_nan_logit_gives_nan_row():
    logits = np.zeros((3, 4), np.float32)
    logits[1, 2] = np.nan
    loss, probs = F.softmax_cross_entropy(logits, np.array([0, 0, 0]))
    assert np.isnan(loss) and np.isnan(probs[1]).all() and not np.isnan(probs[[0, 2]]).any()


def test_gradient_finite_differences():
    logits, labels = make(6, 7, np.float64, seed=3)
    _, probs = F.softmax_cross_entropy(logits, labels)
    grad = F.softmax_cross_entropy_backward(probs, labels)
    h = 1e-6
    fd = np.zeros_like(logits)
    for idx in np.ndindex(*logits.shape):
        plus, minus = logits.copy(), logits.copy()
        plus[idx] += h
        minus[idx] -= h
        fd[idx] = (F.softmax_cross_entropy(plus, labels)[0] - F.softmax_cross_entropy(minus, labels)[0]) / (2 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
def test_vs_torch(torch, dtype):
    logits, labels = make(50, 13, dtype, seed=4)
    t = torch.from_numpy(logits.copy()).requires_grad_()
    lt = torch.nn.functional.cross_entropy(t, torch.from_numpy(labels))
    lt.backward()
    loss, probs = F.softmax_cross_entropy(logits, labels)
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(loss, lt.item(), rtol=rtol)
    np.testing.assert_allclose(probs, torch.softmax(t, 1).detach().numpy(), rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(F.softmax_cross_entropy_backward(probs, labels), t.grad.numpy(),
                               rtol=4 * rtol, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bitwise_identical_across_simd_levels_and_threads(dtype, simd_levels, simd_level, num_threads):
    logits, labels = make(3001, 97, dtype, seed=5)
    results = []
    for level in simd_levels:
        for threads in (1, 2, 3):
            with simd_level(level), num_threads(threads):
                loss, probs = F.softmax_cross_entropy(logits, labels)
                results.append((loss.tobytes(), probs.tobytes(),
                                F.softmax_cross_entropy_backward(probs, labels).tobytes()))
    assert all(r == results[0] for r in results)


def test_out_and_in_place():
    logits, labels = make(9, 6, np.float32)
    loss, probs = F.softmax_cross_entropy(logits, labels)
    lo, po = np.empty((), np.float32), np.empty_like(logits)
    l2, p2 = F.softmax_cross_entropy(logits, labels, out=(lo, po))
    assert l2 is lo and p2 is po and lo == loss and np.array_equal(po, probs)
    l3, p3 = F.softmax_cross_entropy(logits, labels, out=lo)
    assert l3 is lo and np.array_equal(p3, probs)
    x = logits.copy()
    l5, p5 = F.softmax_cross_entropy(x, labels, out=(None, x))  # probs over logits
    assert p5 is x and l5 == loss and np.array_equal(x, probs)
    dl = F.softmax_cross_entropy_backward(probs, labels)
    p4 = probs.copy()
    assert F.softmax_cross_entropy_backward(p4, labels, out=p4) is p4 and np.array_equal(p4, dl)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 3, 10, 15, 16, 17, 100, 1000])
def test_every_width_matches_reference_bitwise_everywhere(k, dtype, simd_levels, simd_level, num_threads,
                                                         stream_threshold):
    """Narrow rows (16 rows per vector) and wide ones (vectors along a row), a row count
    that leaves a partial block, streamed and misaligned outputs, probs over logits: the
    reference's values, and the same bits on every SIMD level, thread count and path."""
    n = 16 * 37 + 5
    logits, labels = make(n, k, dtype, seed=k)
    logits[3, 0] = np.nan  # row 3 is all NaN, the others are not touched
    ref_loss, ref_probs = reference(np.delete(logits, 3, 0), np.delete(labels, 3))
    loss, probs = F.softmax_cross_entropy(logits, labels)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    assert np.isnan(loss) and np.isnan(probs[3]).all()
    np.testing.assert_allclose(np.delete(probs, 3, 0), ref_probs, rtol=4 * rtol, atol=1e-30)
    sane = np.delete(np.arange(n), 3)
    loss_ok, _ = F.softmax_cross_entropy(np.ascontiguousarray(logits[sane]), labels[sane])
    np.testing.assert_allclose(loss_ok, ref_loss, rtol=rtol, atol=rtol)
    for level in simd_levels:
        for threads in (1, 3):
            for threshold in (0, 1 << 40):
                with simd_level(level), num_threads(threads), stream_threshold(threshold):
                    buf = np.empty(logits.size + 1, dtype)
                    out = buf[1:].reshape(logits.shape)  # off a vector boundary
                    l2, p2 = F.softmax_cross_entropy(logits, labels, out=(None, out))
                    x = logits.copy()
                    l3, p3 = F.softmax_cross_entropy(x, labels, out=(None, x))
                    l4, _ = F.softmax_cross_entropy(np.ascontiguousarray(logits[sane]), labels[sane])
                assert p2.tobytes() == probs.tobytes() and p3.tobytes() == probs.tobytes(), (level, threads, threshold)
                assert np.isnan(l2) and np.isnan(l3) and l4.tobytes() == loss_ok.tobytes()


def test_empty_batch_gives_nan_loss():
    loss, probs = F.softmax_cross_entropy(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    assert np.isnan(loss) and probs.shape == (0, 4)
    assert F.softmax_cross_entropy_backward(probs, np.zeros(0, np.int64)).shape == (0, 4)


def _check_error(exc, match, call, *written):
    before = [a.copy() for a in written]
    with pytest.raises(exc, match=match):
        call()
    for a, b in zip(written, before):
        assert np.array_equal(a, b), "an array was written"


def test_errors_nothing_written():
    logits, labels = make(4, 5, np.float32)
    probs = np.full_like(logits, 7.0)
    loss = np.full((), 7.0, np.float32)
    out = (loss, probs)
    for bad in (np.array([0, 1, 5, 2]), np.array([0, -1, 2, 2]), np.array([0, 1, 2, 2**40])):
        _check_error(ValueError, r"labels\[\d\] = .* out of range",
                     lambda: F.softmax_cross_entropy(logits, bad, out=out), loss, probs)
        _check_error(ValueError, "labels", lambda: F.softmax_cross_entropy_backward(logits, bad, out=probs), probs)
    _check_error(TypeError, "labels must have dtype int32 or int64",
                 lambda: F.softmax_cross_entropy(logits, labels.astype(np.float32), out=out), loss, probs)
    _check_error(TypeError, "labels must have dtype",
                 lambda: F.softmax_cross_entropy(logits, labels.astype(np.uint8), out=out), loss, probs)
    _check_error(ValueError, "labels must have shape",
                 lambda: F.softmax_cross_entropy(logits, labels[:3], out=out), loss, probs)
    _check_error(ValueError, r"logits must have shape \(N, K\)",
                 lambda: F.softmax_cross_entropy(logits[0], labels[:1], out=out), loss, probs)
    _check_error(TypeError, "logits must have dtype",
                 lambda: F.softmax_cross_entropy(logits.astype(np.int32), labels, out=out), loss, probs)
    _check_error(TypeError, "labels must be a numpy.ndarray",
                 lambda: F.softmax_cross_entropy(logits, [0, 1, 2, 3], out=out), loss, probs)
    _check_error(TypeError, "out \\(probs\\) has dtype",
                 lambda: F.softmax_cross_entropy(logits, labels, out=(loss, probs.astype(np.float64))), loss)
    _check_error(ValueError, "out \\(loss\\) must have shape",
                 lambda: F.softmax_cross_entropy(logits, labels, out=(np.zeros(1, np.float32), probs)), probs)
    _check_error(ValueError, "overlaps",
                 lambda: F.softmax_cross_entropy(logits.ravel()[:15].reshape(3, 5), labels[:3],
                                                 out=(loss, logits.ravel()[5:].reshape(3, 5))), logits)
    _check_error(ValueError, "out must have shape",
                 lambda: F.softmax_cross_entropy_backward(logits, labels, out=probs[:2]), probs)
