"""fastnn.optim (SGD, Adagrad, RMSprop, Adam, AdamW) and fastnn.nn.Parameter.

Checked against torch.optim (same settings, 200 steps: float64 within 1e-12, float32
within 1e-5 relative), against float64 NumPy references of each rule written here,
for bitwise-exact state dict round trips, the non-finite skip, grad_scale, parameter
groups, determinism across threads and SIMD levels, and every error rule.
"""

import io
import os

import numpy as np
import pytest

import fastnn
from fastnn import optim
from fastnn.nn import Parameter

DTYPES = [np.float32, np.float64]
TOL = {np.float32: 1e-5, np.float64: 1e-12}
SHAPES = [(37,), (5, 7), (), (2, 3, 4), (0, 3)]

# name -> (fastnn class, torch class name, list of keyword sets)
GRID = {
    "SGD": (optim.SGD, "SGD", [
        dict(lr=0.05),
        dict(lr=0.05, momentum=0.9),
        dict(lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.1),
        dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, maximize=True),
        dict(lr=0.1, weight_decay=0.1, maximize=True),
    ]),
    "Adagrad": (optim.Adagrad, "Adagrad", [
        dict(),
        dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.5, eps=1e-6,
             maximize=True),
    ]),
    "RMSprop": (optim.RMSprop, "RMSprop", [
        dict(),
        dict(centered=True),
        dict(momentum=0.9, weight_decay=0.1),
        dict(lr=0.003, alpha=0.3, centered=True, momentum=0.5, maximize=True),
    ]),
    "Adam": (optim.Adam, "Adam", [
        dict(lr=0.01),
        dict(lr=0.01, amsgrad=True),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True),
        dict(lr=0.01, betas=(0.3, 0.5), eps=1e-3),
    ]),
    "AdamW": (optim.AdamW, "AdamW", [
        dict(lr=0.01),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True, maximize=True),
    ]),
}
CASES = [(name, i) for name, (_, _, kws) in GRID.items() for i in range(len(kws))]


def make_params(dtype, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s).astype(dtype) for s in shapes]


def grads_for(rng, datas, dtype):
    return [rng.standard_normal(d.shape).astype(dtype) for d in datas]


def rel_err(a, b):
    """Largest elementwise relative difference; values smaller than a tenth of the
    array's largest count as that tenth (a parameter passing through 0 has no relative
    precision left, whoever computes it)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0:
        return 0.0
    floor = max(0.1 * float(np.max(np.abs(b))), 1e-300)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), floor)))


def snapshot(opt, ps):
    """Copies of every parameter and state value (for bitwise comparisons)."""
    out = [p.data.copy() for p in ps]
    for p in ps:
        for k, v in sorted(opt.state.get(p, {}).items()):
            out.append(np.array(v, copy=True))
    return out


def assert_same_bits(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x).view(np.uint8) if np.asarray(x).ndim else x,
                                      np.asarray(y).view(np.uint8) if np.asarray(y).ndim else y)


# =========================================================================== vs torch


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_matches_torch_200_steps(torch, case, dtype):
    name, i = case
    cls, tname, kws = GRID[name]
    kw = kws[i]
    datas = make_params(dtype)
    ps = [Parameter(d.copy()) for d in datas]
    ts = [torch.tensor(d.copy()) for d in datas]
    fo, to = cls(ps, **kw), getattr(torch.optim, tname)(ts, **kw)
    rng = np.random.default_rng(1)
    for step in range(200):
        gs = grads_for(rng, datas, dtype)
        for j, (p, t, g) in enumerate(zip(ps, ts, gs)):
            skip = j == 1 and step % 3 == 2  # a parameter without a gradient is left alone
            p.grad = None if skip else g
            t.grad = None if skip else torch.tensor(g.copy())
        assert fo.step() is True
        to.step()
    for p, t in zip(ps, ts):
        assert p.data.dtype == dtype
        assert rel_err(p.data, t.numpy()) <= TOL[dtype]
        tstate = to.state[t]
        assert set(fo.state[p]) == set(tstate)
        for key, v in tstate.items():
            if key == "step":
                assert fo.state[p]["step"] == int(v.item())
            else:
                assert fo.state[p][key].dtype == dtype
                assert rel_err(fo.state[p][key], v.numpy()) <= TOL[dtype], key


def test_defaults_match_torch(torch):
    p = Parameter(np.zeros(3))
    for name, (cls, tname, _) in GRID.items():
        ours = cls([p]).defaults
        theirs = getattr(torch.optim, tname)([torch.zeros(3)]).defaults
        for key, v in ours.items():
            if key in theirs:
                assert theirs[key] == v, (name, key)
        assert ours["grad_scale"] == 1.0 and ours["skip_if_nonfinite"] is False


def test_groups_and_lr_changes_match_torch(torch):
    """Per-group hyper-parameters, lr changed mid-run, a group added mid-run, mixed
    dtypes in one group."""
    dtype = np.float64
    datas = make_params(dtype, 3, [(40,), (6,), (3, 3), (9,)])
    datas[1] = datas[1].astype(np.float32)
    ps = [Parameter(d.copy()) for d in datas]
    ts = [torch.tensor(d.copy()) for d in datas]

    def groups(x):
        return [{"params": [x[0], x[1]], "lr": 0.02, "amsgrad": True},
                {"params": [x[2]], "betas": (0.5, 0.9), "weight_decay": 0.1}]

    fo, to = optim.Adam(groups(ps), lr=0.01), torch.optim.Adam(groups(ts), lr=0.01)
    rng = np.random.default_rng(2)
    for step in range(60):
        if step == 20:
            fo.add_param_group({"params": [ps[3]], "lr": 0.05, "maximize": True})
            to.add_param_group({"params": [ts[3]], "lr": 0.05, "maximize": True})
        if step == 30:
            fo.param_groups[0]["lr"] = to.param_groups[0]["lr"] = 0.001
        for p, t in zip(ps, ts):
            g = rng.standard_normal(p.shape).astype(p.dtype)
            p.grad, t.grad = g, torch.tensor(g.copy())
        fo.step()
        to.step()
    for p, t in zip(ps, ts):
        assert rel_err(p.data, t.numpy()) <= TOL[np.float32 if p.dtype == np.float32 else np.float64]
    assert len(fo.param_groups) == 3 and fo.param_groups[2]["maximize"] is True


# =========================================================================== float64 references


def reference_step(name, kw, p, g, st):
    """One step of the rule in float64, written from the published formulas."""
    lr = kw.get("lr", {"SGD": 1e-3, "Adagrad": 1e-2, "RMSprop": 1e-2}.get(name, 1e-3))
    wd = kw.get("weight_decay", 1e-2 if name == "AdamW" else 0.0)
    g = -g if kw.get("maximize") else g.copy()
    if name == "SGD":
        g = g + wd * p
        mu, damp = kw.get("momentum", 0.0), kw.get("dampening", 0.0)
        if mu:
            st["buf"] = g.copy() if "buf" not in st else mu * st["buf"] + (1 - damp) * g
            g = g + mu * st["buf"] if kw.get("nesterov") else st["buf"]
        return p - lr * g
    st["t"] = st.get("t", 0) + 1
    t = st["t"]
    if name == "Adagrad":
        g = g + wd * p
        st.setdefault("sum", np.full_like(p, kw.get("initial_accumulator_value", 0.0)))
        st["sum"] = st["sum"] + g * g
        clr = lr / (1 + (t - 1) * kw.get("lr_decay", 0.0))
        return p - clr * g / (np.sqrt(st["sum"]) + kw.get("eps", 1e-10))
    if name == "RMSprop":
        g = g + wd * p
        a = kw.get("alpha", 0.99)
        st["sq"] = a * st.get("sq", 0.0) + (1 - a) * g * g
        var = st["sq"]
        if kw.get("centered"):
            st["ga"] = a * st.get("ga", 0.0) + (1 - a) * g
            var = var - st["ga"] ** 2
        d = np.sqrt(var) + kw.get("eps", 1e-8)
        mu = kw.get("momentum", 0.0)
        if mu > 0:
            st["buf"] = mu * st.get("buf", 0.0) + g / d
            return p - lr * st["buf"]
        return p - lr * g / d
    b1, b2 = kw.get("betas", (0.9, 0.999))
    if name == "AdamW":
        p = p * (1 - lr * wd)
    else:
        g = g + wd * p
    st["m"] = b1 * st.get("m", 0.0) + (1 - b1) * g
    st["v"] = b2 * st.get("v", 0.0) + (1 - b2) * g * g
    v = st["v"]
    if kw.get("amsgrad"):
        st["vmax"] = np.maximum(st.get("vmax", 0.0), v)
        v = st["vmax"]
    m_hat = st["m"] / (1 - b1 ** t)
    return p - lr * m_hat / (np.sqrt(v) / np.sqrt(1 - b2 ** t) + kw.get("eps", 1e-8))


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_matches_float64_reference(case):
    name, i = case
    cls, _, kws = GRID[name]
    kw = kws[i]
    datas = make_params(np.float64, 5, [(41,), (2, 5)])
    ps = [Parameter(d.copy()) for d in datas]
    refs, states = [d.copy() for d in datas], [{}, {}]
    opt = cls(ps, **kw)
    rng = np.random.default_rng(6)
    for _ in range(50):
        for j, p in enumerate(ps):
            g = rng.standard_normal(p.shape)
            p.grad = g
            refs[j] = reference_step(name, kw, refs[j], g, states[j])
        opt.step()
    for p, r in zip(ps, refs):
        assert rel_err(p.data, r) <= 1e-12


# =========================================================================== state dicts

FULL_STATE = [
    (optim.SGD, dict(lr=0.05, momentum=0.9, nesterov=True)),
    (optim.Adagrad, dict(lr=0.1, lr_decay=0.01)),
    (optim.RMSprop, dict(centered=True, momentum=0.5)),
    (optim.Adam, dict(lr=0.01, amsgrad=True)),
    (optim.AdamW, dict(lr=0.01)),
]


def run(opt, ps, rng, steps):
    for _ in range(steps):
        for p in ps:
            p.grad = rng.standard_normal(p.shape).astype(p.dtype)
        opt.step()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,kw", FULL_STATE, ids=[c.__name__ for c, _ in FULL_STATE])
def test_state_dict_round_trip_through_npz_is_bit_exact(cls, kw, dtype):
    datas = make_params(dtype, 7, [(33,), (4, 4), ()])
    ps = [Parameter(d.copy()) for d in datas]
    opt = cls([{"params": ps[:2]}, {"params": ps[2:], "lr": 0.02}], **kw)
    run(opt, ps, np.random.default_rng(8), 10)
    opt.param_groups[0]["lr"] = 0.007  # a changed hyper-parameter travels too

    buf = io.BytesIO()
    np.savez(buf, **optim.state_dict_to_arrays(opt.state_dict()))
    buf.seek(0)
    loaded = np.load(buf, allow_pickle=False)
    ps2 = [Parameter(p.data.copy()) for p in ps]
    opt2 = cls([{"params": ps2[:2]}, {"params": ps2[2:]}], lr=0.5)
    opt2.load_state_dict(loaded)
    assert opt2.param_groups[0]["lr"] == 0.007 and opt2.param_groups[1]["lr"] == 0.02
    assert opt2.param_groups[0]["params"][0] is ps2[0]

    run(opt, ps, np.random.default_rng(9), 10)
    run(opt2, ps2, np.random.default_rng(9), 10)
    assert_same_bits(snapshot(opt, ps), snapshot(opt2, ps2))


def test_state_dict_nested_form_matches_torch_layout(torch):
    ps = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    opt = optim.Adam([{"params": [ps[0]]}, {"params": [ps[1]], "lr": 0.1}])
    ps[0].grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert list(sd["state"]) == [0]  # ps[1] had no gradient: no state yet
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and sd["state"][0]["step"] == 1
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    # the nested form loads directly too, and the arrays are copied in
    opt2 = optim.Adam([{"params": [Parameter(np.ones(3))]}, {"params": [Parameter(np.ones(2))]}])
    opt2.load_state_dict(sd)
    p0 = opt2.param_groups[0]["params"][0]
    assert opt2.state[p0]["exp_avg"] is not sd["state"][0]["exp_avg"]
    np.testing.assert_array_equal(opt2.state[p0]["exp_avg"], sd["state"][0]["exp_avg"])


def test_load_state_dict_errors_leave_optimizer_unchanged():
    ps = [Parameter(np.ones(3)), Parameter(np.ones(2))]
    opt = optim.SGD(ps, lr=0.1, momentum=0.9)
    for p in ps:
        p.grad = np.ones(p.shape)
    opt.step()
    sd = opt.state_dict()
    other = optim.SGD([Parameter(np.ones(3))], lr=0.1)
    with pytest.raises(ValueError, match="size of optimizer's group"):
        other.load_state_dict(sd)
    two = optim.SGD([{"params": [Parameter(np.ones(3))]}, {"params": [Parameter(np.ones(2))]}])
    with pytest.raises(ValueError, match="number of parameter groups"):
        two.load_state_dict(sd)
    swapped = optim.SGD([Parameter(np.ones(2)), Parameter(np.ones(3))], lr=0.5)
    with pytest.raises(ValueError, match="momentum_buffer has shape"):
        swapped.load_state_dict(sd)
    assert swapped.state == {} and swapped.param_groups[0]["lr"] == 0.5


# =========================================================================== non-finite skip, grad_scale


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("groups", [1, 2])  # 1: the kernel scans; 2: a scan of every group first
@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("cls,kw", FULL_STATE, ids=[c.__name__ for c, _ in FULL_STATE])
def test_nonfinite_gradient_skips_the_whole_step(cls, kw, bad, groups, threads, num_threads):
    rng = np.random.default_rng(10)
    datas = make_params(np.float32, 11, [(100,), (20,), (100_000,)])

    def make(ps):
        return cls([{"params": ps}] if groups == 1 else [{"params": ps[:2]}, {"params": ps[2:]}],
                   **kw, skip_if_nonfinite=True)

    ps = [Parameter(d.copy()) for d in datas]
    opt = make(ps)
    run(opt, ps, rng, 3)
    clean = [Parameter(p.data.copy()) for p in ps]
    opt_clean = make(clean)
    opt_clean.load_state_dict(opt.state_dict())

    before = snapshot(opt, ps)
    for p in ps:
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    ps[2].grad[70_001] = bad  # in the last group, deep in the array
    with num_threads(threads):
        assert opt.step() is False
    assert_same_bits(snapshot(opt, ps), before)
    # the next finite step continues as if the bad one never happened
    g = [rng.standard_normal(p.shape).astype(np.float32) for p in ps]
    for p, q, gi in zip(ps, clean, g):
        p.grad, q.grad = gi, gi.copy()
    assert opt.step() is True and opt_clean.step() is True
    assert_same_bits(snapshot(opt, ps), snapshot(opt_clean, clean))


@pytest.mark.parametrize("skip", [False, None], ids=["False", "default"])
def test_nonfinite_without_skip_propagates_nan(skip):
    p = Parameter(np.ones(40, np.float32))
    opt = optim.Adam([p], lr=0.1) if skip is None else optim.Adam([p], lr=0.1, skip_if_nonfinite=skip)
    p.grad = np.ones(40, np.float32)
    p.grad[3] = np.nan
    p.grad[20] = np.inf
    assert opt.step() is True
    assert np.isinf(opt.state[p]["exp_avg_sq"][20]) and np.isnan(opt.state[p]["exp_avg"][3])
    assert np.isnan(p.data[[3, 20]]).all()
    assert np.isfinite(np.delete(p.data, [3, 20])).all()


def test_skip_is_per_group_option():
    a, b = Parameter(np.ones(4)), Parameter(np.ones(4))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "skip_if_nonfinite": False}], lr=1.0,
                    skip_if_nonfinite=True)
    a.grad, b.grad = np.ones(4), np.full(4, np.inf)
    assert opt.step() is True  # only group 1 holds inf and it does not check
    np.testing.assert_array_equal(a.data, 0.0)
    assert np.isinf(b.data).all()


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("cls,kw", FULL_STATE, ids=[c.__name__ for c, _ in FULL_STATE])
def test_grad_scale_power_of_two_is_exact(cls, kw, dtype):
    datas = make_params(dtype, 12, [(70,), (3,)])
    ps, qs = [Parameter(d.copy()) for d in datas], [Parameter(d.copy()) for d in datas]
    scaled, plain = cls(ps, **kw, grad_scale=1024.0), cls(qs, **kw)
    rng = np.random.default_rng(13)
    for _ in range(5):
        for p, q in zip(ps, qs):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad, q.grad = g * dtype(1024), g
        scaled.step()
        plain.step()
    assert_same_bits(snapshot(scaled, ps), snapshot(plain, qs))


def test_grad_scale_divides_inside_the_kernel():
    datas = make_params(np.float64, 14, [(50,)])
    p = Parameter(datas[0].copy())
    opt = optim.Adam([p], lr=0.01, grad_scale=3.0)
    ref, st = datas[0].copy(), {}
    rng = np.random.default_rng(15)
    for step in range(20):
        g = rng.standard_normal(50)
        p.grad = g
        if step == 10:
            opt.param_groups[0]["grad_scale"] = 5.0  # a loss scaler changes it between steps
        ref = reference_step("Adam", dict(lr=0.01), ref, g / opt.param_groups[0]["grad_scale"], st)
        opt.step()
    assert rel_err(p.data, ref) <= 1e-12


# =========================================================================== determinism, shapes


@pytest.mark.parametrize("cls,kw", FULL_STATE, ids=[c.__name__ for c, _ in FULL_STATE])
def test_bitwise_identical_across_threads_and_simd_levels(cls, kw, simd_levels, simd_level, num_threads):
    # chunks of 2**15 elements: a parameter over several chunks, and many small ones
    shapes = [(100_003,), (1,), (17,), (3, 5)] + [(n,) for n in range(30, 60, 3)]
    datas = make_params(np.float32, 16, shapes)
    results = []
    for level in simd_levels:
        for threads in (1, 2, 3):
            with simd_level(level), num_threads(threads):
                ps = [Parameter(d.copy()) for d in datas]
                opt = cls(ps, **kw)
                run(opt, ps, np.random.default_rng(17), 3)
                results.append(((level, threads), snapshot(opt, ps)))
    for _, snap in results[1:]:
        assert_same_bits(snap, results[0][1])


def test_zero_d_and_empty_parameters(torch):
    ps = [Parameter(np.array(2.0)), Parameter(np.zeros((0, 4))), Parameter(np.ones(3))]
    ts = [torch.tensor(p.data.copy()) for p in ps]
    fo, to = optim.Adam(ps, lr=0.1), torch.optim.Adam(ts, lr=0.1)
    for step in range(5):
        for p, t in zip(ps, ts):
            g = np.full(p.shape, 0.5 + step)
            p.grad, t.grad = g, torch.tensor(g)
        fo.step()
        to.step()
    for p, t in zip(ps, ts):
        assert p.shape == tuple(t.shape) and rel_err(p.data, t.numpy()) <= 1e-12
    assert fo.state[ps[0]]["exp_avg"].shape == ()


def test_parameters_are_updated_in_place_and_views_see_it():
    base = np.zeros(10)
    p = Parameter(base)
    view = base[2:5]
    opt = optim.SGD([p], lr=1.0)
    p.grad = np.ones(10)
    opt.step()
    assert p.data is base and (view == -1.0).all()


def test_zero_grad():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(3))
    opt = optim.SGD([p, q])
    p.grad = np.ones(3)
    g = np.ones(3)
    q.grad = g
    opt.zero_grad(set_to_none=False)
    assert p.grad is not None and (p.grad == 0).all() and q.grad is g and (g == 0).all()
    opt.zero_grad()
    assert p.grad is None and q.grad is None


def test_parameter_conveniences():
    p = Parameter(np.zeros((2, 3), np.float32))
    assert p.shape == (2, 3) and p.dtype == np.float32 and p.ndim == 2 and p.dim() == 2
    assert p.size() == (2, 3) and p.size(1) == 3 and p.numel() == 6
    assert p.requires_grad and p.grad is None
    assert np.asarray(p) is p.data
    assert "Parameter containing" in repr(p)
    p.data = np.ones((4,), np.float32)
    assert p.shape == (4,)


@pytest.mark.bigmem
def test_more_than_2_31_elements():
    """One SGD step over a parameter of 2**31 + 100 float32 values (about 17 GB)."""
    if os.environ.get("FASTNN_BIGMEM") != "1":
        pytest.skip("set FASTNN_BIGMEM=1 to run")
    n = 2**31 + 100
    p = Parameter(np.zeros(n, np.float32))
    p.grad = np.ones(n, np.float32)
    p.grad[-1] = 4.0
    opt = optim.SGD([p], lr=0.5)
    assert opt.step()
    assert p.data[0] == -0.5 and p.data[2**31 + 5] == -0.5 and p.data[-1] == -2.0


# =========================================================================== errors


BAD_HYPER = [
    (optim.SGD, dict(lr=-0.1), "lr"),
    (optim.SGD, dict(momentum=-0.5), "momentum"),
    (optim.SGD, dict(weight_decay=-1.0), "weight_decay"),
    (optim.SGD, dict(nesterov=True), "Nesterov"),
    (optim.SGD, dict(nesterov=True, momentum=0.9, dampening=0.1), "Nesterov"),
    (optim.Adagrad, dict(lr=-1.0), "lr"),
    (optim.Adagrad, dict(lr_decay=-0.1), "lr_decay"),
    (optim.Adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
    (optim.Adagrad, dict(eps=-1e-10), "eps"),
    (optim.RMSprop, dict(alpha=-0.1), "alpha"),
    (optim.RMSprop, dict(eps=-1.0), "eps"),
    (optim.RMSprop, dict(momentum=-1.0), "momentum"),
    (optim.RMSprop, dict(weight_decay=-1.0), "weight_decay"),
    (optim.Adam, dict(lr=float("nan")), "lr"),
    (optim.Adam, dict(betas=(1.0, 0.999)), "index 0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), "index 1"),
    (optim.Adam, dict(betas=(0.9,)), "betas"),
    (optim.Adam, dict(eps=-1e-8), "eps"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.Adam, dict(grad_scale=0.0), "grad_scale"),
    (optim.SGD, dict(grad_scale=float("inf")), "grad_scale"),
]


@pytest.mark.parametrize("cls,kw,word", BAD_HYPER, ids=[f"{c.__name__}-{w}" for c, _, w in BAD_HYPER])
def test_bad_hyper_parameters(cls, kw, word):
    with pytest.raises(ValueError, match=word):
        cls([Parameter(np.ones(2))], **kw)
    # the same value in a group added later
    opt = cls([Parameter(np.ones(2))])
    with pytest.raises(ValueError, match=word):
        opt.add_param_group(dict(kw, params=[Parameter(np.ones(2))]))
    assert len(opt.param_groups) == 1


def test_hyper_parameter_types():
    with pytest.raises(TypeError, match="lr"):
        optim.SGD([Parameter(np.ones(2))], lr="0.1")
    with pytest.raises(TypeError, match="betas"):
        optim.Adam([Parameter(np.ones(2))], betas=(0.9, "x"))


def test_params_errors():
    with pytest.raises(TypeError, match="iterable"):
        optim.SGD(Parameter(np.ones(2)))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="Parameter"):
        optim.SGD([np.ones(2)])
    with pytest.raises(TypeError, match="sets"):
        optim.SGD([{"params": {Parameter(np.ones(2))}}])
    p = Parameter(np.ones(2))
    with pytest.raises(ValueError, match="more than once"):
        optim.SGD([p, p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        optim.SGD([{"params": [p]}, {"params": [p]}])
    with pytest.raises(TypeError, match="dict"):
        optim.SGD([p]).add_param_group([p])


def test_parameter_errors():
    with pytest.raises(TypeError, match="data must be a numpy.ndarray"):
        Parameter([1.0, 2.0])
    with pytest.raises(TypeError, match="float32 or float64"):
        Parameter(np.ones(2, np.int64))
    with pytest.raises(ValueError, match="C-contiguous"):
        Parameter(np.ones((4, 4))[:, ::2])
    ro = np.ones(2)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        Parameter(ro)
    p = Parameter(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"grad has shape \(3, 2\)"):
        p.grad = np.ones((3, 2))
    with pytest.raises(TypeError, match="grad has dtype float32"):
        p.grad = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="grad must be None or a numpy.ndarray"):
        p.grad = [[1.0] * 3] * 2
    # the layout is checked where the gradient is assigned, not at optimizer.step()
    with pytest.raises(ValueError, match="grad must be C-contiguous, writeable and aligned"):
        p.grad = np.ones((3, 2)).T
    read_only = np.ones((2, 3))
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="grad must be C-contiguous, writeable and aligned"):
        p.grad = read_only
    unaligned = np.frombuffer(bytearray(8 * 6 + 1), np.uint8)[1:].view(np.float64).reshape(2, 3)
    assert not unaligned.flags.aligned
    with pytest.raises(ValueError, match="grad must be C-contiguous, writeable and aligned"):
        p.grad = unaligned
    assert p.grad is None


def test_step_errors_write_nothing():
    """A bad gradient anywhere is reported (naming it) before any parameter changes."""
    a, b = Parameter(np.ones(3)), Parameter(np.ones((2, 2)))
    opt = optim.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad, b.grad = np.ones(3), np.ones((2, 2))
    b.data = np.ones(4)  # the gradient no longer matches the parameter
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]\.grad has shape"):
        opt.step()
    assert (a.data == 1).all() and opt.state == {}
    b.data = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"param_groups\[1\].*dtype float64"):
        opt.step()
    assert (a.data == 1).all() and opt.state == {}


def test_aliased_state_is_refused():
    """Two parameters over one buffer, or a gradient over its parameter: refused by the
    native step (it updates in place), before anything is written."""
    buf = np.ones(8)
    p, q = Parameter(buf[:5]), Parameter(buf[3:])
    opt = optim.SGD([p, q], lr=0.1, momentum=0.9)
    p.grad, q.grad = np.ones(5), np.ones(5)
    with pytest.raises(ValueError, match="overlaps"):
        opt.step()
    assert (buf == 1).all() and opt.state == {}  # no half-made momentum buffer either
    r = Parameter(np.ones(4))
    r.grad = r.data
    with pytest.raises(ValueError, match="overlaps"):
        optim.SGD([r], lr=0.1).step()
    assert (r.data == 1).all()


@pytest.mark.parametrize("case", CASES, ids=[f"{n}-{i}" for n, i in CASES])
def test_frozen_and_gradless_parameters_are_untouched(case):
    """requires_grad=False (even with a gradient set) and grad None: the parameter and
    its state are left alone, as torch leaves them; the others are updated as usual."""
    name, i = case
    cls, _, kws = GRID[name]
    live, frozen, gradless = (Parameter(np.full(4, v)) for v in (1.0, 2.0, 3.0))
    frozen.requires_grad_(False)
    opt = cls([live, frozen, gradless], **kws[i])
    for _ in range(3):
        live.grad, frozen.grad = np.full(4, 0.5), np.full(4, 0.5)
        opt.step()
    assert (frozen.data == 2).all() and (gradless.data == 3).all()
    assert frozen not in opt.state and gradless not in opt.state
    assert not (live.data == 1).all()
    alone = Parameter(np.full(4, 1.0))
    ref = cls([alone], **kws[i])
    for _ in range(3):
        alone.grad = np.full(4, 0.5)
        ref.step()
    np.testing.assert_array_equal(live.data, alone.data)  # the frozen ones changed nothing for the others
