"""Dropout (fastnn.functional.dropout / dropout_backward / dropout_mask) and fastnn.random.

The mask rule of docs/design.md is checked bit for bit against a Philox4x32-10 written here
in NumPy (uint64 arithmetic), itself checked against Random123's known answers.
"""

import threading

import numpy as np
import pytest

import fastnn
from fastnn import functional as F

DTYPES = [np.float32, np.float64]
U32 = np.uint64(0xFFFFFFFF)

# Random123's known answers: (counter, key) -> out, all as 32-bit words.
KNOWN_ANSWERS = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


# =========================================================================== reference


def philox_np(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 over arrays of counter words (uint64 holding 32-bit values)."""
    c = [np.asarray(w, np.uint64) & U32 for w in (c0, c1, c2, c3)]
    k0, k1 = np.uint64(k0), np.uint64(k1)
    m0, m1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
    for _ in range(10):
        p0, p1 = m0 * c[0], m1 * c[2]  # < 2**64: exact
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & U32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & U32]
        k0, k1 = (k0 + np.uint64(0x9E3779B9)) & U32, (k1 + np.uint64(0xBB67AE85)) & U32
    return np.stack(c, axis=-1)


def ref_words(seed, offset, first_block, blocks):
    """(blocks, 4) words of blocks first_block, ... at (seed, offset), per the mask rule."""
    b = np.uint64(first_block) + np.arange(blocks, dtype=np.uint64)
    return philox_np(b & U32, b >> np.uint64(32), np.full(blocks, offset & 0xFFFFFFFF, np.uint64),
                     np.full(blocks, offset >> 32, np.uint64), seed & 0xFFFFFFFF, seed >> 32)


def ref_keep(n, p, seed, offset):
    """Bool keep flags of n elements: word i % 4 of block i // 4 >= round(p * 2**32)."""
    words = ref_words(seed, offset, 0, (n + 3) // 4).reshape(-1)[:n]
    return words >= np.uint64(round(p * 2**32))


def packbits(keep):
    return np.packbits(keep, bitorder="little")


def unpack(mask, n):
    return np.unpackbits(mask, bitorder="little", count=n).astype(bool)


def ref_dropout(x, keep, p):
    scale = x.dtype.type(1.0 / (1.0 - p)) if p < 1 else x.dtype.type(0)
    return x * np.where(keep.reshape(x.shape), scale, x.dtype.type(0))


def rand_x(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def assert_same_bits(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


# =========================================================================== generator


def test_known_answers_scalar_and_numpy():
    for ctr, key, out in KNOWN_ANSWERS:
        assert fastnn._cpu.philox4x32_10(*ctr, *key) == out
        assert tuple(int(w) for w in philox_np(*ctr, *key)) == out


def test_known_answers_every_simd_level(simd_levels, simd_level):
    # counter (b lo, b hi, offset lo, offset hi), key (seed lo, seed hi)
    for ctr, key, out in KNOWN_ANSWERS:
        seed, offset, block = key[0] | key[1] << 32, ctr[2] | ctr[3] << 32, ctr[0] | ctr[1] << 32
        for level in simd_levels:
            with simd_level(level):
                first = max(block - 5, 0)  # the vector kernel runs 16 blocks at once
                words = fastnn._cpu.philox4x32_10_blocks(seed, offset, first, block - first + 1)
                assert tuple(int(w) for w in words[-1]) == out, level


@pytest.mark.parametrize("first", [0, 7, 2**32 - 9, 2**32 - 16, 2**40 + 3, 2**64 - 40])
def test_vector_blocks_match_numpy(simd_levels, simd_level, first):
    # runs of 16 blocks that carry into the counter's high word, or don't
    seed, offset = 0x0123456789ABCDEF, 2**63 + 12345
    ref = ref_words(seed, offset, first, 37)
    for level in simd_levels:
        with simd_level(level):
            got = fastnn._cpu.philox4x32_10_blocks(seed, offset, first, 37)
        np.testing.assert_array_equal(got, ref.astype(np.uint32), err_msg=level)


# =========================================================================== mask rule


MASK_CASES = [  # n, p, seed, offset
    (0, 0.5, 1, 0), (1, 0.5, 2, 0), (3, 0.3, 3, 1), (5, 0.5, 2**32 + 7, 2**33 + 1),
    (7, 0.9, 2**64 - 1, 2**64 - 1), (8, 0.5, 0, 0), (63, 0.2, 99, 5), (64, 0.5, 2**40, 3),
    (65, 0.7, 12, 2**32), (1001, 0.1, 2**63, 2**63 + 17), (32768 * 2 + 13, 0.5, 77, 2**50),
]


@pytest.mark.parametrize("n,p,seed,offset", MASK_CASES)
def test_mask_matches_reference(n, p, seed, offset):
    keep = ref_keep(n, p, seed, offset)
    mask = F.dropout_mask(n, p, seed=seed, offset=offset)
    assert mask.dtype == np.uint8 and mask.shape == ((n + 7) // 8,)
    assert_same_bits(mask, packbits(keep))  # bits past n are 0, as packbits pads
    for dtype in DTYPES:
        x = rand_x((n,), dtype, seed=n)
        y, m = F.dropout(x, p, seed=seed, offset=offset)
        assert_same_bits(m, mask)
        assert_same_bits(y, ref_dropout(x, keep, p))


def test_random_cases_match_reference():
    rng = np.random.default_rng(2024)
    for _ in range(12):
        n = int(rng.integers(1, 3000))
        p = float(rng.uniform(0, 1))
        seed, offset = int(rng.integers(0, 2**63)) * 2 + 1, int(rng.integers(0, 2**64, dtype=np.uint64))
        x = rand_x((n,), np.float32, seed=n)
        y, m = F.dropout(x, p, seed=seed, offset=offset)
        keep = ref_keep(n, p, seed, offset)
        assert_same_bits(m, packbits(keep))
        assert_same_bits(y, ref_dropout(x, keep, p))


@pytest.mark.parametrize("dtype", DTYPES)
def test_same_bits_any_threads_and_simd_level(simd_levels, simd_level, num_threads, dtype):
    n = 32768 * 5 + 77  # several tasks and a ragged tail
    x = rand_x((n,), dtype)
    dy = rand_x((n,), dtype, seed=1)
    results = []
    for level in simd_levels:
        for threads in (1, 2, 3):
            with simd_level(level), num_threads(threads):
                y, m = F.dropout(x, 0.3, seed=2**40 + 5, offset=2**35)
                dx = F.dropout_backward(dy, m, 0.3)
                dx_regen = F.dropout_backward(dy, None, 0.3, seed=2**40 + 5, offset=2**35)
                results.append((level, threads, y, m, dx, dx_regen))
    keep = ref_keep(n, 0.3, 2**40 + 5, 2**35)
    for level, threads, y, m, dx, dx_regen in results:
        assert_same_bits(m, packbits(keep))
        assert_same_bits(y, ref_dropout(x, keep, 0.3))
        assert_same_bits(dx, ref_dropout(dy, keep, 0.3))
        assert_same_bits(dx_regen, dx)


@pytest.mark.parametrize("dtype", DTYPES)
def test_streamed_output_same_bits(simd_levels, simd_level, stream_threshold, dtype):
    # Big outputs aligned to 64 bytes are streamed past the cache; others are not.
    n = 32768 * 3 + 77
    x = rand_x((n,), dtype)
    keep = ref_keep(n, 0.3, 7, 11)
    itemsize = np.dtype(dtype).itemsize
    buf = np.zeros(n + 64, dtype)
    aligned = (-buf.ctypes.data % 64) // itemsize
    for level in simd_levels:
        with simd_level(level), stream_threshold(0):
            for start in (aligned, aligned + 1):
                out = buf[start:start + n]
                y, m = F.dropout(x, 0.3, seed=7, offset=11, out=(out, None))
                assert y is out
                assert_same_bits(y, ref_dropout(x, keep, 0.3))
                assert_same_bits(m, packbits(keep))


def test_threshold_is_exact_and_rounds_half_to_even():
    # thresholds placed on the words themselves: r >= round(p * 2**32) with ties to even
    n, seed = 64, 9
    words = ref_words(seed, 0, 0, n // 4).reshape(-1).astype(np.int64)
    for i in (int(np.flatnonzero(words % 2 == 0)[0]), int(np.flatnonzero(words % 2 == 1)[0])):
        w = int(words[i])
        for t2, kept in [(2 * w, True), (2 * w + 2, False), (2 * w - 1, True),
                         (2 * w + 1, w % 2 == 0)]:  # p * 2**32 = t2 / 2; (w + 0.5) -> w if w even
            p = t2 / 2**33
            bits = unpack(F.dropout_mask(n, p, seed=seed), n)
            assert bits[i] == kept, (w, t2)
            assert_same_bits(F.dropout_mask(n, p, seed=seed), packbits(ref_keep(n, p, seed, 0)))
    # p below 2**-33 rounds to 0 (keep all), p above 1 - 2**-33 to 2**32 (keep none)
    for p, t in [(2**-33, 0), (1 - 2**-34, 2**32)]:
        words = ref_words(9, 0, 0, 1000).reshape(-1)
        assert_same_bits(F.dropout_mask(4000, p, seed=9), packbits(words >= np.uint64(t)))


# =========================================================================== statistics


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_kept_fraction(p):
    n = 1 << 20
    kept = int(unpack(F.dropout_mask(n, p, seed=123, offset=4), n).sum())
    assert abs(kept - n * (1 - p)) < 5 * np.sqrt(n * p * (1 - p))


def chi_square_pairs(a, b, bins):
    """Chi-square of the (a, b) pair counts against independent uniform a and b."""
    counts = np.bincount(a.astype(np.int64) * bins + b, minlength=bins * bins)
    expected = len(a) / bins**2
    return float(((counts - expected) ** 2 / expected).sum())


def test_pairs_uncorrelated():
    # top 4 bits of words: 256 cells, 255 degrees of freedom (mean 255, sd 22.6);
    # 400 is 6.4 sd out
    blocks = 1 << 16
    w = (fastnn._cpu.philox4x32_10_blocks(2**33 + 1, 7, 0, blocks) >> 28).astype(np.int64)
    w_next_offset = (fastnn._cpu.philox4x32_10_blocks(2**33 + 1, 8, 0, blocks) >> 28).astype(np.int64)
    flat = w.reshape(-1)
    cases = {
        "neighbouring elements": (flat[:-1], flat[1:]),
        "neighbouring lanes (blocks)": (w[:-1, 0], w[1:, 0]),
        "16 blocks apart (SIMD registers)": (w[:-16, 2], w[16:, 2]),
        "consecutive offsets": (w[:, 1], w_next_offset[:, 1]),
    }
    for name, (a, b) in cases.items():
        assert chi_square_pairs(a, b, 16) < 400, name
    # and the keep bits themselves at p = 0.5: 4 cells, 3 dof, 25 is p < 2e-5
    n = 1 << 20
    keep = unpack(F.dropout_mask(n, 0.5, seed=5, offset=0), n).astype(np.int64)
    keep_next = unpack(F.dropout_mask(n, 0.5, seed=5, offset=1), n).astype(np.int64)
    assert chi_square_pairs(keep[:-1], keep[1:], 2) < 25
    assert chi_square_pairs(keep[:-4], keep[4:], 2) < 25
    assert chi_square_pairs(keep, keep_next, 2) < 25


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mean_of_y_is_x(p):
    n = 1 << 20
    x = np.full(n, 3.0, np.float64)
    y, _ = F.dropout(x, p, seed=31)
    # y = 3 / (1 - p) with probability 1 - p, else 0: var = 9 p / (1 - p)
    assert abs(y.mean() - 3.0) < 5 * np.sqrt(9 * p / (1 - p) / n)


# =========================================================================== semantics


@pytest.mark.parametrize("dtype", DTYPES)
def test_out_and_in_place(dtype):
    n = 1000
    x = rand_x((10, 100), dtype)
    y_ref, m_ref = F.dropout(x, 0.4, seed=8, offset=2)
    y, m = np.full_like(x, 7), np.zeros((n + 7) // 8, np.uint8)
    res = F.dropout(x, 0.4, seed=8, offset=2, out=(y, m))
    assert res.y is y and res.mask is m
    assert_same_bits(y, y_ref)
    assert_same_bits(m, m_ref)
    y2 = np.empty_like(x)
    assert F.dropout(x, 0.4, seed=8, offset=2, out=y2).y is y2
    xi = x.copy()
    yi, mi = F.dropout(xi, 0.4, seed=8, offset=2, out=xi)
    assert yi is xi
    assert_same_bits(xi, y_ref)
    assert_same_bits(mi, m_ref)
    # backward: out=, in place over dy, regenerated
    dy = rand_x((10, 100), dtype, seed=3)
    dx_ref = ref_dropout(dy, unpack(m_ref, n), 0.4)
    assert_same_bits(F.dropout_backward(dy, m_ref, 0.4), dx_ref)
    dx = np.empty_like(dy)
    assert F.dropout_backward(dy, m_ref, 0.4, out=dx) is dx
    assert_same_bits(dx, dx_ref)
    dyi = dy.copy()
    assert F.dropout_backward(dyi, None, 0.4, seed=8, offset=2, out=dyi) is dyi
    assert_same_bits(dyi, dx_ref)
    mo = np.empty_like(m_ref)
    assert F.dropout_mask(n, 0.4, seed=8, offset=2, out=mo) is mo
    assert_same_bits(mo, m_ref)


def test_nan_and_inf_stay_nan():
    x = np.array([np.nan, np.inf, -np.inf, 1.0] * 16, np.float32)
    y, m = F.dropout(x, 0.5, seed=3)
    keep = unpack(m, x.size)
    assert 0 < keep.sum() < x.size
    assert np.isnan(y[0::4]).all()
    assert np.isnan(y[1::4][~keep[1::4]]).all()  # inf * 0
    assert (y[1::4][keep[1::4]] == np.inf).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_p_edge_cases(dtype):
    n = 77
    x = rand_x((n,), dtype)
    x[3] = np.nan
    ones = packbits(np.ones(n, bool))
    gen = fastnn.random.Generator(5)
    # p = 0: y is x, mask all ones (bits past n 0); the generator still moves
    y, m = F.dropout(x, 0.0, generator=gen)
    assert_same_bits(y, x)
    assert_same_bits(m, ones)
    assert gen.offset == (n + 3) // 4
    # eval: identity, all ones, nothing drawn
    y, m = F.dropout(x, 0.7, training=False, generator=gen)
    assert_same_bits(y, x)
    assert_same_bits(m, ones)
    assert gen.offset == (n + 3) // 4
    xi = x.copy()
    assert F.dropout(xi, 0.7, training=False, out=xi).y is xi
    assert_same_bits(xi, x)
    # p = 1: x * 0 (zeros, NaN stays NaN), mask all zeros
    y, m = F.dropout(x, 1.0, seed=4)
    assert_same_bits(m, np.zeros_like(ones))
    assert np.isnan(y[3]) and (np.delete(y, 3) == 0).all()
    assert_same_bits(F.dropout_backward(x, m, 1.0), x * dtype(0))
    assert_same_bits(F.dropout_backward(x, None, 1.0, seed=4), x * dtype(0))
    assert_same_bits(F.dropout_mask(n, 1.0, seed=4), np.zeros_like(ones))
    assert_same_bits(F.dropout_mask(n, 0.0, seed=4), ones)
    # backward at p = 0 keeps dy
    assert_same_bits(F.dropout_backward(x, ones, 0.0), x)
    assert_same_bits(F.dropout_backward(x, None, 0.0, seed=1), x)


def test_empty():
    y, m = F.dropout(np.empty((0, 3), np.float32), 0.5, seed=1)
    assert y.shape == (0, 3) and m.shape == (0,)
    assert F.dropout_backward(np.empty(0), np.empty(0, np.uint8), 0.5).shape == (0,)


def test_torch_cross_check(torch):
    # torch's dropout keeps x * (1 / (1 - p)) in x's dtype, as fastnn does; its backward
    # (native_dropout_backward) is dy * mask * scale
    x = np.ones(4096, np.float32) * 1.5
    p = 0.3
    y, m = F.dropout(x, p, seed=1)
    ty = torch.nn.functional.dropout(torch.from_numpy(x), p, training=True).numpy()
    np.testing.assert_array_equal(np.unique(y[y != 0]), np.unique(ty[ty != 0]))
    dy = rand_x((4096,), np.float32)
    keep = torch.from_numpy(unpack(m, x.size))
    tdx = torch.ops.aten.native_dropout_backward(torch.from_numpy(dy), keep, 1 / (1 - p)).numpy()
    assert_same_bits(F.dropout_backward(dy, m, p), tdx)


# =========================================================================== fastnn.random


def test_global_seed_reproduces():
    x = np.ones(1000, np.float32)
    fastnn.random.seed(2**50 + 3)
    a = F.dropout(x, 0.5).mask
    b = F.dropout(x, 0.5).mask
    assert a.tobytes() != b.tobytes()  # the offset moved on
    fastnn.random.manual_seed(2**50 + 3)
    assert F.dropout(x, 0.5).mask.tobytes() == a.tobytes()
    assert fastnn.random.initial_seed() == 2**50 + 3
    # the drawn (seed, offset) is what the call used
    assert_same_bits(b, F.dropout_mask(1000, 0.5, seed=2**50 + 3, offset=250))
    assert fastnn.random.default_generator.offset == 250


def test_generator_keyword_and_state():
    x = np.ones(10, np.float32)
    g = fastnn.random.Generator(11)
    m1 = F.dropout(x, 0.5, generator=g).mask
    assert g.get_state() == (11, 3)
    g.set_state((11, 0))
    assert F.dropout(x, 0.5, generator=g).mask.tobytes() == m1.tobytes()
    assert_same_bits(m1, F.dropout_mask(10, 0.5, seed=11, offset=0))
    assert fastnn.random.Generator().seed != fastnn.random.Generator().seed  # os.urandom


def test_generator_offsets_never_overlap():
    g = fastnn.random.Generator(1)
    sizes = [0, 1, 3, 4, 5, 17, 1000]
    spans = []
    lock = threading.Lock()

    def worker():
        for i in range(300):
            n = sizes[i % len(sizes)]
            seed, offset = g.draw(n)
            with lock:
                spans.append((offset, offset + (n + 3) // 4))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert spans[-1][1] == g.offset == 4 * sum((sizes[i % len(sizes)] + 3) // 4 for i in range(300))


def test_concurrent_calls_share_a_generator():
    # the kernels run without the GIL; every call gets its own offset range
    n, calls = 40_000, 24
    g = fastnn.random.Generator(77)
    x = np.ones(n, np.float32)
    masks = []
    lock = threading.Lock()

    def worker():
        for _ in range(calls // 4):
            m = F.dropout(x, 0.5, generator=g).mask
            with lock:
                masks.append(m.tobytes())

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    expected = {F.dropout_mask(n, 0.5, seed=77, offset=k * n // 4).tobytes() for k in range(calls)}
    assert len(expected) == calls and set(masks) == expected


def test_generator_errors():
    with pytest.raises(TypeError, match="seed"):
        fastnn.random.Generator(1.5)
    with pytest.raises(ValueError, match="seed"):
        fastnn.random.Generator(-1)
    with pytest.raises(ValueError, match="seed"):
        fastnn.random.seed(2**64)
    g = fastnn.random.Generator(1)
    g.set_state((1, 2**64 - 2))
    with pytest.raises(OverflowError):
        g.draw(100)
    assert g.offset == 2**64 - 2


# =========================================================================== errors


def sentinel_outs(n, dtype=np.float32):
    return np.full(n, 7, dtype), np.full((n + 7) // 8, 0xAB, np.uint8)


def assert_untouched(*arrays):
    for a in arrays:
        assert (a == (0xAB if a.dtype == np.uint8 else 7)).all()


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(p=-0.1), ValueError, "p must be in"),
    (dict(p=1.5), ValueError, "p must be in"),
    (dict(p=float("nan")), ValueError, "p must be in"),
    (dict(p="0.5"), TypeError, "p must be a number"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=2**64), ValueError, "seed"),
    (dict(seed=1.0), TypeError, "seed"),
    (dict(seed=True), TypeError, "seed"),
    (dict(seed=1, offset=-1), ValueError, "offset"),
    (dict(seed=1, offset=2**64), ValueError, "offset"),
    (dict(seed=1, offset=0.5), TypeError, "offset"),
    (dict(offset=3), ValueError, "offset is given but seed is None"),
    (dict(seed=1, generator=fastnn.random.Generator(1)), ValueError, "not both"),
])
def test_dropout_argument_errors(kwargs, exc, match):
    x = rand_x((100,), np.float32)
    y, m = sentinel_outs(100)
    args = dict(p=0.5, seed=None, offset=0)
    args.update(kwargs)
    state = fastnn.random.default_generator.get_state()
    with pytest.raises(exc, match=match):
        F.dropout(x, args.pop("p"), out=(y, m), **args)
    assert_untouched(y, m)
    assert fastnn.random.default_generator.get_state() == state


def test_dropout_array_errors():
    x = rand_x((100,), np.float32)
    y, m = sentinel_outs(100)
    ro = np.full(100, 7, np.float32)
    ro.flags.writeable = False
    cases = [
        (dict(x=x.astype(np.int32)), TypeError, "x must have dtype"),
        (dict(x=x.astype(np.float16)), TypeError, "x must have dtype"),
        (dict(x=list(x)), TypeError, "numpy.ndarray"),
        (dict(x=rand_x((100, 2), np.float32)[:, 0]), ValueError, "C-contiguous"),
        (dict(out=(np.full(99, 7, np.float32), m)), ValueError, "out \\(y\\) must have shape"),
        (dict(out=(np.full(100, 7, np.float64), m)), TypeError, "dtype"),
        (dict(out=(ro, m)), ValueError, "read-only"),
        (dict(out=(y, np.full(12, 0xAB, np.uint8))), ValueError, "out \\(mask\\) must have shape \\(13,\\)"),
        (dict(out=(y, np.full(13, 0x2B, np.int8))), TypeError, "uint8"),
        (dict(out=(y, m, None)), ValueError, "tuple of 2"),
        (dict(out=(y, x.view(np.uint8)[:13])), ValueError, "overlaps"),
    ]
    for kw, exc, match in cases:
        args = dict(x=x, out=(y, m))
        args.update(kw)
        with pytest.raises(exc, match=match):
            F.dropout(args["x"], 0.5, seed=1, out=args["out"])
        assert_untouched(y, m, ro)


def test_backward_and_mask_errors():
    dy = rand_x((100,), np.float32)
    dx = np.full(100, 7, np.float32)
    mask = F.dropout_mask(100, 0.5, seed=1)
    cases = [
        (lambda: F.dropout_backward(dy, mask[:-1], 0.5, out=dx), ValueError, "mask must have shape"),
        (lambda: F.dropout_backward(dy, np.zeros(14, np.uint8), 0.5, out=dx), ValueError, "mask must have shape"),
        (lambda: F.dropout_backward(dy, mask.astype(np.int32), 0.5, out=dx), TypeError, "mask must have dtype uint8"),
        (lambda: F.dropout_backward(dy, mask.view(bool), 0.5, out=dx), TypeError, "uint8"),
        (lambda: F.dropout_backward(dy, mask, 1.01, out=dx), ValueError, "p must be in"),
        (lambda: F.dropout_backward(dy, mask, float("nan"), out=dx), ValueError, "p must be in"),
        (lambda: F.dropout_backward(dy, None, 0.5, out=dx), ValueError, "pass the forward's seed"),
        (lambda: F.dropout_backward(dy, mask, 0.5, seed=1, out=dx), ValueError, "not both"),
        (lambda: F.dropout_backward(dy, None, 0.5, seed=-3, out=dx), ValueError, "seed"),
        (lambda: F.dropout_backward(dy, mask, 0.5, out=dx.astype(np.float64)), TypeError, "dtype"),
        (lambda: F.dropout_backward(dy.astype(np.int64), mask, 0.5, out=dx), TypeError, "dy must have dtype"),
        (lambda: F.dropout_backward(dy, dx.view(np.uint8)[:13], 0.5, out=dx), ValueError, "overlaps"),
    ]
    for call, exc, match in cases:
        with pytest.raises(exc, match=match):
            call()
        assert (dx == 7).all()
    out = np.full(13, 0xAB, np.uint8)
    mask_cases = [
        (lambda: F.dropout_mask(-1, 0.5, seed=1), ValueError, "n must be >= 0"),
        (lambda: F.dropout_mask(10.0, 0.5, seed=1), TypeError, "n must be an int"),
        (lambda: F.dropout_mask(100, 0.5, seed=1, out=out[:12]), ValueError, "shape"),
        (lambda: F.dropout_mask(100, 0.5, seed=1, out=out.view(np.int8)), TypeError, "uint8"),
        (lambda: F.dropout_mask(100, -0.5, seed=1, out=out), ValueError, "p must be in"),
        (lambda: F.dropout_mask(100, 0.5, seed=2**64, out=out), ValueError, "seed"),
        (lambda: F.dropout_mask(100, 0.5, out=out), TypeError, "seed"),
    ]
    for call, exc, match in mask_cases:
        with pytest.raises(exc, match=match):
            call()
        assert (out == 0xAB).all()
