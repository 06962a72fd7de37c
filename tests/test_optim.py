"""fastnn.optim (SGD, Adagrad, RMSprop, Adam, AdamW, Adadelta) and fastnn.nn.Parameter.

Checked against torch.optim (same settings, 200 steps: float64 within 1e-12, float32
within 1e-5 relative), against float64 NumPy references of each rule written here,
for bitwise-exact state dict round trips, the non-finite skip, grad_scale, parameter
groups, determinism across threads and SIMD levels, and every error rule.
"""

import io
import os
import time

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
    "Adadelta": (optim.Adadelta, "Adadelta", [
        dict(),
        dict(lr=0.5, rho=0.5, eps=1e-3, weight_decay=0.1, maximize=True),
        dict(lr=2.0, rho=0.99, eps=1e-8),
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
    if name == "Adadelta":
        g = g + wd * p
        rho, eps = kw.get("rho", 0.9), kw.get("eps", 1e-6)
        st["sq"] = rho * st.get("sq", 0.0) + (1 - rho) * g * g
        delta = np.sqrt(st.get("acc", 0.0) + eps) / np.sqrt(st["sq"] + eps) * g
        st["acc"] = rho * st.get("acc", 0.0) + (1 - rho) * delta * delta
        return p - kw.get("lr", 1.0) * delta
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
    (optim.Adadelta, dict(weight_decay=0.01)),
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
    with pytest.raises(ValueError, match=r"\['momentum_buffer'\] has shape"):
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
    shapes = [(100_003,), (1,), (0,), (17,), (3, 5)] + [(n,) for n in range(30, 60, 3)] + [(70_000,)]
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
    (optim.Adam, dict(betas=(1.0, 0.999)), r"\['betas'\]\[0\] must be in \[0, 1\), got 1.0"),
    (optim.Adam, dict(betas=(0.9, -0.1)), r"\['betas'\]\[1\]"),
    (optim.Adam, dict(betas=(0.9,)), "betas"),
    (optim.Adam, dict(eps=-1e-8), "eps"),
    (optim.AdamW, dict(weight_decay=-0.01), "weight_decay"),
    (optim.Adam, dict(grad_scale=0.0), "grad_scale"),
    (optim.SGD, dict(grad_scale=float("inf")), "grad_scale"),
    # stricter than torch: finite values, dampening and alpha in [0, 1]
    (optim.SGD, dict(momentum=0.9, dampening=float("nan")), r"\['dampening'\] must be a finite number, got nan"),
    (optim.SGD, dict(momentum=0.9, dampening=1.5), r"\['dampening'\] must be in \[0, 1\], got 1.5"),
    (optim.SGD, dict(lr=float("inf")), r"\['lr'\] must be a finite number, got inf"),
    (optim.RMSprop, dict(alpha=1.5), r"\['alpha'\] must be in \[0, 1\], got 1.5"),
    (optim.RMSprop, dict(alpha=float("nan")), r"\['alpha'\]"),
    (optim.Adam, dict(eps=float("inf")), r"\['eps'\] must be a finite number, got inf"),
    (optim.Adagrad, dict(lr_decay=float("inf")), r"\['lr_decay'\]"),
    (optim.Adadelta, dict(rho=1.5), r"\['rho'\] must be in \[0, 1\], got 1.5"),
    (optim.Adadelta, dict(eps=-1e-6), r"\['eps'\] must be >= 0, got -1e-06"),
    (optim.Adadelta, dict(lr=-1.0), r"\['lr'\]"),
    (optim.Adadelta, dict(weight_decay=float("nan")), r"\['weight_decay'\]"),
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
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]\.grad must have shape"):
        opt.step()
    assert (a.data == 1).all() and opt.state == {}
    b.data = np.ones((2, 2), np.float32)
    with pytest.raises(TypeError, match=r"param_groups\[1\].*dtype float64"):
        opt.step()
    assert (a.data == 1).all() and opt.state == {}


def test_aliased_gradient_is_refused():
    """A gradient over its own parameter: refused (the step updates in place) before
    anything is written."""
    r = Parameter(np.ones(4))
    r.grad = r.data
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[0\]\.grad overlaps "
                                         r"param_groups\[0\]\['params'\]\[0\]\.data"):
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


# =========================================================================== shared memory (defect 1)


def test_parameters_sharing_memory_are_refused_naming_both():
    buf = np.zeros(4, np.float32)
    a, b = Parameter(buf), Parameter(buf)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\] shares memory with "
                                         r"param_groups\[0\]\['params'\]\[0\]"):
        optim.SGD([{"params": [a]}, {"params": [b]}], lr=1.0)
    opt = optim.SGD([{"params": [a]}], lr=1.0)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[1\] shares memory with "
                                         r"param_groups\[0\]\['params'\]\[0\]"):
        opt.add_param_group({"params": [Parameter(np.zeros(2, np.float32)), b]})
    assert len(opt.param_groups) == 1  # nothing added
    big = np.zeros(10)
    with pytest.raises(ValueError, match=r"param_groups\[0\]\['params'\]\[1\] shares memory with "
                                         r"param_groups\[0\]\['params'\]\[0\]"):
        optim.Adam([Parameter(big[:6]), Parameter(big[5:])])  # partial overlap, one group
    optim.Adam([Parameter(big[:5]), Parameter(big[5:])])  # adjacent halves are fine
    optim.Adam([Parameter(np.zeros(0)), Parameter(np.zeros(0))])  # empty ones never overlap


def test_memory_shared_after_construction_is_refused_at_step():
    """The issue's example, reached by reassigning .data after construction: refused at
    step() (not updated twice), nothing written."""
    buf = np.zeros(4, np.float32)
    a, b = Parameter(buf), Parameter(np.zeros(4, np.float32))
    opt = optim.SGD([{"params": [a]}, {"params": [b]}], lr=1.0)
    a.grad = b.grad = np.ones(4, np.float32)
    assert opt.step()
    b.data = buf
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]\.data overlaps "
                                         r"param_groups\[0\]\['params'\]\[0\]\.data"):
        opt.step()
    np.testing.assert_array_equal(buf, -1.0)


# =========================================================================== all or nothing (defect 2)


def _unaligned(like):
    raw = np.zeros(like.nbytes + 1, np.uint8)
    out = np.frombuffer(raw.data, like.dtype, like.size, 1).reshape(like.shape)
    assert not out.flags.aligned
    return out


def _read_only_data(p, opt):
    p.data.flags.writeable = False


def _reshaped_data(p, opt):
    p.data = np.ones(p.data.size, p.dtype)


def _reshaped_in_place(p, opt):
    # the same array object, another shape (an identity check alone would miss it)
    p.data.shape = (p.data.size,)
    p._grad = np.ones(p.data.size, p.dtype)


def _state_of_other_shape(p, opt):
    name = next(k for k in sorted(opt.state[p]) if k != "step")
    opt.state[p][name] = np.zeros(p.data.size + 1, p.dtype)


def _state_over_other_parameter(p, opt):
    other = opt.param_groups[0]["params"][0]
    name = next(k for k in sorted(opt.state[p]) if k != "step")
    opt.state[p][name] = other.data.reshape(-1)[: p.data.size].reshape(p.shape)


def _state_read_only(p, opt):
    name = next(k for k in sorted(opt.state[p]) if k != "step")
    opt.state[p][name].flags.writeable = False


def _grad_over_other_parameter(p, opt):
    other = opt.param_groups[0]["params"][0]
    p._grad = other.data.reshape(-1)[: p.data.size].reshape(p.shape)


def _grad_unaligned(p, opt):
    p._grad = _unaligned(p.data)


def _grad_wrong_dtype(p, opt):
    p._grad = p.grad.astype(np.float32)


def _grad_not_an_array(p, opt):
    p._grad = p.grad.tolist()


def _data_float16(p, opt):
    p._data = p.data.astype(np.float16)


def _requires_grad_not_a_bool(p, opt):
    with pytest.raises(TypeError, match="requires_grad must be a bool"):
        p.requires_grad = "yes"  # the setter refuses it; the step checks what the slot holds
    p._requires_grad = "yes"


def _bad_step_count(p, opt):
    opt.state[p]["step"] = -1


def _group_flag_a_string(p, opt):
    opt.param_groups[1]["maximize"] = "False"


def _group_unknown_key(p, opt):
    opt.param_groups[1]["lrr"] = 0.1


BREAKS = [
    (_read_only_data, ValueError, r"param_groups\[1\]\['params'\]\[1\]\.data is read-only"),
    (_reshaped_data, ValueError, r"param_groups\[1\]\['params'\]\[1\]\.grad must have shape \(6,\), got \(2, 3\)"),
    (_reshaped_in_place, ValueError, r"state\[param_groups\[1\]\['params'\]\[1\]\]\['\w+'\] must have shape \(6,\)"),
    (_state_of_other_shape, ValueError, r"state\[param_groups\[1\]\['params'\]\[1\]\]\['\w+'\] must have shape"),
    (_state_over_other_parameter, ValueError, r"overlaps"),
    (_state_read_only, ValueError, r"state\[param_groups\[1\]\['params'\]\[1\]\]\['\w+'\] is read-only"),
    (_grad_over_other_parameter, ValueError,  # (named in address order)
     r"(?=.*param_groups\[1\]\['params'\]\[1\]\.grad)(?=.*param_groups\[0\]\['params'\]\[0\]\.data).*overlaps"),
    (_grad_unaligned, ValueError, r"param_groups\[1\]\['params'\]\[1\]\.grad must be aligned"),
    (_grad_wrong_dtype, TypeError, r"param_groups\[1\]\['params'\]\[1\]\.grad has dtype float32 but "
                                   r"param_groups\[1\]\['params'\]\[1\]\.data has float64"),
    (_grad_not_an_array, TypeError, r"param_groups\[1\]\['params'\]\[1\]\.grad must be a numpy.ndarray"),
    (_data_float16, TypeError, r"param_groups\[1\]\['params'\]\[1\]\.data must have dtype float32 or float64"),
    (_requires_grad_not_a_bool, TypeError, r"param_groups\[1\]\['params'\]\[1\]\.requires_grad must be a bool"),
    (_bad_step_count, ValueError, r"state\[param_groups\[1\]\['params'\]\[1\]\]\['step'\] must be an integer"),
    (_group_flag_a_string, TypeError, r"param_groups\[1\]\['maximize'\] must be a bool, got str"),
    (_group_unknown_key, ValueError, r"param_groups\[1\] has an unknown key 'lrr'"),
]
STATEFUL = [(c, kw) for c, kw in FULL_STATE if c is not optim.SGD] + [(optim.SGD, dict(momentum=0.9))]


def _full_snapshot(opt):
    """Every parameter, state array and step count of every group, copied."""
    out = []
    for g in opt.param_groups:
        for p in g["params"]:
            out.append(np.array(p.data, copy=True))
            out += [(k, np.array(v, copy=True)) for k, v in sorted(opt.state.get(p, {}).items())]
    return out


def _same_snapshot(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        if isinstance(x, tuple):
            assert x[0] == y[0]
            x, y = x[1], y[1]
        assert x.shape == y.shape and x.dtype == y.dtype and x.tobytes() == y.tobytes()


@pytest.mark.parametrize("brk,exc,match", BREAKS, ids=[b.__name__.strip("_") for b, _, _ in BREAKS])
@pytest.mark.parametrize("cls,kw", STATEFUL, ids=[c.__name__ for c, _ in STATEFUL])
def test_a_refused_step_moves_nothing_in_any_group(cls, kw, brk, exc, match):
    """Three groups, the middle one broken after two good steps (so state exists and the
    native tables were cached): the step names the user's path, and no parameter, state
    array or step count moved in any group, before or after the broken one. (The
    snapshot is taken after the break, which may itself replace arrays.)"""
    if brk is _bad_step_count and cls is optim.SGD:
        pytest.skip("SGD keeps no step count")
    rng = np.random.default_rng(21)
    ps = [Parameter(rng.standard_normal(s)) for s in [(10,), (4,), (2, 3), (7,)]]
    opt = cls([{"params": ps[:1]}, {"params": ps[1:3]}, {"params": ps[3:]}], **kw)
    for _ in range(2):
        for p in ps:
            p.grad = rng.standard_normal(p.shape)
        assert opt.step()
    for p in ps:
        p.grad = rng.standard_normal(p.shape)
    brk(ps[2], opt)
    before = _full_snapshot(opt)
    with pytest.raises(exc, match=match):
        opt.step()
    _same_snapshot(_full_snapshot(opt), before)


def test_the_issue_example_unaligned_gradient_in_a_later_group():
    a, b = Parameter(np.zeros(4, np.float32)), Parameter(np.zeros(4, np.float32))
    opt = optim.Adam([{"params": [a]}, {"params": [b]}], lr=0.1)
    a.grad = np.ones(4, np.float32)
    b._grad = _unaligned(b.data)
    with pytest.raises(ValueError, match=r"param_groups\[1\]\['params'\]\[0\]\.grad must be aligned"):
        opt.step()
    assert (a.data == 0).all() and a not in opt.state and b not in opt.state


def test_checks_that_could_fail_run_after_the_tables_are_cached():
    """Steps reuse what they proved at the last step only while the arrays are the same
    memory; every change below is seen."""
    a, b = Parameter(np.ones(6)), Parameter(np.ones(6))
    opt = optim.SGD([a, b], lr=0.1, momentum=0.9)
    for _ in range(3):
        a.grad, b.grad = np.ones(6), np.ones(6)
        assert opt.step()
    b.data = a.data[::-1].copy()  # new memory, no overlap: fine
    assert opt.step()
    b.data = a.data  # the same memory as a: refused
    with pytest.raises(ValueError, match=r"\]\.data overlaps param_groups\[0\]\['params'\]\[0\]\.data"):
        opt.step()
    b.data = np.ones(6)
    opt.state[b]["momentum_buffer"] = opt.state[a]["momentum_buffer"]  # two parameters, one buffer
    with pytest.raises(ValueError, match=r"\['momentum_buffer'\] overlaps state\[param_groups\[0\]"):
        opt.step()


def test_step_count_and_arrays_stay_in_line_when_interrupted():
    """Exceptions raised by a signal handler at random moments of step() (as
    KeyboardInterrupt is): every step is applied to every group with its step count, or
    not at all."""
    signal = pytest.importorskip("signal")
    if not hasattr(signal, "setitimer"):
        pytest.skip("needs signal.setitimer")

    class Interrupt(Exception):
        pass

    def make():
        ps = [Parameter(np.linspace(-1, 1, n, dtype=dt)) for n, dt in
              [(50, np.float64), (3000, np.float32), (7, np.float64), (20_000, np.float32), (1, np.float64)]]
        for i, p in enumerate(ps):
            p.grad = np.linspace(0.5, -0.5 + i, p.data.size, dtype=p.dtype)
        groups = [{"params": ps[:2]}, {"params": ps[2:3], "lr": 0.02}, {"params": ps[3:], "amsgrad": True}]
        return ps, optim.Adam(groups, lr=0.01)

    ref_ps, ref = make()
    trajectory = [[p.data.copy() for p in ref_ps]]
    steps = 120
    for _ in range(steps):
        ref.step()
        trajectory.append([p.data.copy() for p in ref_ps])

    ps, opt = make()
    armed = [False]

    def handler(signum, frame):
        if armed[0]:
            armed[0] = False
            raise Interrupt

    t0 = time.perf_counter()
    for _ in range(5):
        ref.step()
    typical = (time.perf_counter() - t0) / 5
    delays = np.random.default_rng(43).uniform(0.0, 1.5 * typical, 20 * steps)
    old = signal.signal(signal.SIGALRM, handler)
    interrupted = 0
    try:
        for delay in delays:
            counts = {opt.state[p]["step"] if p in opt.state else 0 for p in ps}
            assert len(counts) == 1, counts  # every group at the same step
            (count,) = counts
            for p, want in zip(ps, trajectory[count]):
                assert p.data.tobytes() == want.tobytes()
            if count == steps:
                break
            try:
                armed[0] = True
                signal.setitimer(signal.ITIMER_REAL, max(float(delay), 1e-6))
                opt.step()
                armed[0] = False
            except Interrupt:
                interrupted += 1
            armed[0] = False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert count == steps
    assert interrupted > 0


# =========================================================================== checkpoints (defect 6)


def _exactly(a, b):
    """Equal values of the same types, inside tuples and lists too."""
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_exactly(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_every_group_value_round_trips_through_npz(dtype):
    datas = make_params(dtype, 31, [(13,), (3, 3), (5,)])
    ps = [Parameter(d.copy()) for d in datas]
    groups = [{"params": ps[:1], "grad_scale": None, "betas": [0.8, 0.99], "amsgrad": True},
              {"params": ps[1:], "lr": 3e-3, "grad_scale": 512.0, "skip_if_nonfinite": True, "maximize": True,
               "weight_decay": 0, "eps": 1e-7}]
    opt = optim.Adam(groups, lr=0.01)
    sched = optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)  # adds 'initial_lr' to the groups
    rng = np.random.default_rng(32)
    for _ in range(4):
        for p in ps:
            p.grad = rng.standard_normal(p.shape).astype(dtype)
        opt.step()
        sched.step()
    buf = io.BytesIO()
    np.savez(buf, **optim.state_dict_to_arrays(opt.state_dict()))
    buf.seek(0)
    ps2 = [Parameter(p.data.copy()) for p in ps]
    opt2 = optim.Adam([{"params": ps2[:1]}, {"params": ps2[1:]}], lr=0.5)
    opt2.load_state_dict(np.load(buf, allow_pickle=False))
    for g, g2 in zip(opt.param_groups, opt2.param_groups):
        assert set(g) == set(g2)
        for key in g:
            if key != "params":
                assert _exactly(g[key], g2[key]), (key, g[key], g2[key])
    assert opt2.param_groups[0]["grad_scale"] is None and opt2.param_groups[0]["betas"] == [0.8, 0.99]
    for _ in range(5):
        for p, q in zip(ps, ps2):
            p.grad = rng.standard_normal(p.shape).astype(dtype)
            q.grad = p.grad.copy()
        opt.step()
        opt2.step()
    assert_same_bits(snapshot(opt, ps), snapshot(opt2, ps2))


def test_flat_state_dict_round_trips_nested_literals():
    sd = {"state": {0: {"step": 3, "exp_avg": np.arange(3.0)}},
          "param_groups": [{"params": [0], "betas": (0.5, 0.25), "grad_scale": None, "nested": [(1, 2.5), None],
                            "flag": np.True_, "n": np.int64(7), "lr": np.float32(0.5)}]}
    back = optim.state_dict_from_arrays(optim.state_dict_to_arrays(sd))
    g = back["param_groups"][0]
    assert _exactly(g["betas"], (0.5, 0.25)) and g["grad_scale"] is None
    assert _exactly(g["nested"], [(1, 2.5), None])
    assert g["flag"] is True and _exactly(g["n"], 7) and _exactly(g["lr"], 0.5) and g["params"] == [0]
    assert int(back["state"][0]["step"]) == 3


def _sgd_state():
    p = Parameter(np.ones(3))
    opt = optim.SGD([p], lr=0.1, momentum=0.9)
    p.grad = np.ones(3)
    opt.step()
    return opt.state_dict()


def _adam_state(**change):
    p = Parameter(np.ones(3))
    opt = optim.Adam([p], lr=0.1)
    p.grad = np.ones(3)
    opt.step()
    sd = opt.state_dict()
    for key, value in change.items():
        if key in sd["state"][0]:
            sd["state"][0][key] = value
        else:
            sd["param_groups"][0][key] = value
    return sd


def _flat(sd, **extra):
    arrays = optim.state_dict_to_arrays(sd)
    arrays.update(extra)
    return arrays


BAD_LOADS = [
    (lambda: _sgd_state(), r"loaded param_groups\[0\] has 'momentum', which Adam's groups do not have: "
                           r"is it another optimizer's state dict"),
    (lambda: _adam_state(step=-1), r"loaded state\[0\]\['step'\] must be an integer in \[0, 2\*\*53\], got -1"),
    (lambda: _adam_state(step=2.7), r"loaded state\[0\]\['step'\] must be an integer .*got 2.7"),
    (lambda: _adam_state(step=True), r"loaded state\[0\]\['step'\] must be an integer"),
    (lambda: _adam_state(exp_avg=np.ones(3, np.int64)), r"loaded state\[0\]\['exp_avg'\] must be a float array"),
    (lambda: _adam_state(exp_avg=np.ones(4)), r"loaded state\[0\]\['exp_avg'\] has shape \(4,\)"),
    (lambda: _adam_state(lrr=0.1), r"loaded param_groups\[0\] has 'lrr'"),
    (lambda: _adam_state(amsgrad="no"), r"param_groups\[0\]\['amsgrad'\] must be a bool"),  # TypeError
    (lambda: _adam_state(lr=float("inf")), r"param_groups\[0\]\['lr'\] must be a finite number"),
    (lambda: _flat(_adam_state(), **{"state.0": np.ones(3)}), r"cannot parse the key 'state.0'"),
    (lambda: _flat(_adam_state(), **{"params.0.lr": np.ones(3)}), r"cannot parse the key 'params.0.lr'"),
    (lambda: _flat(_adam_state(), **{"param_groups.x.lr": np.ones(3)}), r"cannot parse the key"),
    (lambda: _flat(_adam_state(), **{"param_groups.0.lr": np.ones(3)}), r"cannot read 'param_groups.0.lr'"),
    (lambda: _flat(_adam_state(), **{"param_groups.2.lr": np.asarray(0.1)}),
     r"no keys 'param_groups.1.\*'"),
    (lambda: _flat(_adam_state(), **{"state.0.momentum_buffer": np.ones(3)}),
     r"loaded state\[0\]\['momentum_buffer'\]: Adam keeps no 'momentum_buffer'"),
]


@pytest.mark.parametrize("make,match", BAD_LOADS, ids=[str(i) for i in range(len(BAD_LOADS))])
def test_load_state_dict_refuses_and_loads_nothing(make, match):
    p = Parameter(np.full(3, 2.0))
    opt = optim.Adam([p], lr=0.25)
    p.grad = np.full(3, 0.5)
    opt.step()
    before, lr = _full_snapshot(opt), opt.param_groups[0]["lr"]
    with pytest.raises(TypeError if "must be a bool" in match else ValueError, match=match):
        opt.load_state_dict(make())
    _same_snapshot(_full_snapshot(opt), before)
    assert opt.param_groups[0]["lr"] == lr and opt.param_groups[0]["params"] == [p]


def test_adamw_refuses_adam_state_and_missing_keys():
    p = Parameter(np.ones(3))
    sd = optim.Adam([p]).state_dict()
    opt = optim.AdamW([Parameter(np.ones(3))])
    with pytest.raises(ValueError, match=r"\['decoupled_weight_decay'\] must be True for AdamW"):
        opt.load_state_dict(sd)
    del sd["param_groups"][0]["eps"]
    with pytest.raises(ValueError, match=r"param_groups\[0\] has no 'eps'"):
        optim.Adam([Parameter(np.ones(3))]).load_state_dict(sd)


# =========================================================================== flags and keys


FLAGS = [(optim.Adam, "maximize", "False"), (optim.Adam, "amsgrad", "no"), (optim.SGD, "nesterov", 1),
         (optim.RMSprop, "centered", "yes"), (optim.Adagrad, "skip_if_nonfinite", 0),
         (optim.Adam, "decoupled_weight_decay", "True"), (optim.Adadelta, "maximize", None)]


@pytest.mark.parametrize("cls,key,value", FLAGS, ids=[f"{c.__name__}-{k}" for c, k, _ in FLAGS])
def test_flags_must_be_bools(cls, key, value):
    kw = dict(momentum=0.9) if cls is optim.SGD else {}
    with pytest.raises(TypeError, match=rf"param_groups\[0\]\['{key}'\] must be a bool, got"):
        cls([Parameter(np.ones(2))], **kw, **{key: value})
    # set on a group after construction: refused at step(), nothing moves
    p = Parameter(np.ones(2))
    opt = cls([p], **kw)
    opt.param_groups[0][key] = value
    p.grad = np.ones(2)
    with pytest.raises(TypeError, match=rf"param_groups\[0\]\['{key}'\] must be a bool"):
        opt.step()
    assert (p.data == 1).all() and p not in opt.state


def test_numpy_bools_are_flags():
    p, q = Parameter(np.ones(3)), Parameter(np.ones(3))
    a = optim.SGD([p], lr=0.5, maximize=np.True_)
    b = optim.SGD([q], lr=0.5, maximize=True)
    p.grad, q.grad = np.ones(3), np.ones(3)
    a.step()
    b.step()
    np.testing.assert_array_equal(p.data, 1.5)
    np.testing.assert_array_equal(p.data, q.data)


def test_unknown_group_keys_are_refused():
    with pytest.raises(ValueError, match=r"param_groups\[0\] has an unknown key 'lrr'; SGD takes lr, "):
        optim.SGD([{"params": [Parameter(np.ones(2))], "lrr": 0.1}])
    opt = optim.SGD([Parameter(np.ones(2))])
    with pytest.raises(ValueError, match=r"param_groups\[1\] has an unknown key 'betas'"):
        opt.add_param_group({"params": [Parameter(np.ones(2))], "betas": (0.9, 0.99)})
    assert len(opt.param_groups) == 1


# =========================================================================== Adadelta


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("kw", [dict(), dict(lr=0.1, rho=0.95, eps=1e-5, weight_decay=0.05),
                                dict(maximize=True, weight_decay=0.3), dict(rho=0.0), dict(rho=1.0)],
                         ids=["defaults", "tuned", "maximize", "rho0", "rho1"])
def test_adadelta_matches_torch_over_1000_steps(torch, kw, dtype):
    datas = make_params(dtype, 41, [(300,), (4, 5), ()])
    ps = [Parameter(d.copy()) for d in datas]
    ts = [torch.tensor(d.copy()) for d in datas]
    fo, to = optim.Adadelta(ps, **kw), torch.optim.Adadelta(ts, **kw)
    rng = np.random.default_rng(42)
    for _ in range(1000):
        for p, t in zip(ps, ts):
            g = rng.standard_normal(p.shape).astype(dtype)
            p.grad, t.grad = g, torch.tensor(g.copy())
        fo.step()
        to.step()
    tol = {np.float32: 2e-5, np.float64: 1e-12}[dtype]
    for p, t in zip(ps, ts):
        assert rel_err(p.data, t.numpy()) <= tol
        for key in ("square_avg", "acc_delta"):
            assert rel_err(fo.state[p][key], to.state[t][key].numpy()) <= tol, key
        assert fo.state[p]["step"] == int(to.state[t]["step"].item()) == 1000


def test_adadelta_first_step_by_hand():
    """One step from zero state, written out: square_avg = (1 - rho) g^2, delta =
    sqrt(eps) / sqrt(square_avg + eps) * g, acc_delta = (1 - rho) delta^2."""
    g = np.array([0.5, -2.0, 0.0, 1e-4])
    p = Parameter(np.ones(4))
    opt = optim.Adadelta([p], lr=0.7, rho=0.8, eps=1e-4)
    p.grad = g
    opt.step()
    sq = 0.2 * g * g
    delta = np.sqrt(1e-4) / np.sqrt(sq + 1e-4) * g
    np.testing.assert_allclose(opt.state[p]["square_avg"], sq, rtol=1e-15)
    np.testing.assert_allclose(opt.state[p]["acc_delta"], 0.2 * delta * delta, rtol=1e-15)
    np.testing.assert_allclose(p.data, 1 - 0.7 * delta, rtol=1e-15)


# =========================================================================== arrays the fast path leaves to the checks


class _Sub(np.ndarray):
    pass


@pytest.mark.parametrize("make", [lambda a: a.view(_Sub), lambda a: a.astype(np.dtype(a.dtype, metadata={"m": 1}))],
                         ids=["ndarray-subclass", "dtype-with-metadata"])
def test_unusual_but_valid_arrays_step_like_plain_ones(make):
    """An ndarray subclass, or a dtype object NumPy does not share, takes the named
    checks instead of the fast path, passes them and steps bit for bit as plain arrays."""
    datas = make_params(np.float32, 51, [(9,), (2, 5)])
    ps, qs = [Parameter(make(d.copy())) for d in datas], [Parameter(d.copy()) for d in datas]
    a, b = optim.Adam(ps, lr=0.1, amsgrad=True), optim.Adam(qs, lr=0.1, amsgrad=True)
    rng = np.random.default_rng(52)
    for _ in range(3):
        for p, q in zip(ps, qs):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, q.grad = make(g.copy()), g
        a.step()
        b.step()
    assert_same_bits([np.asarray(x) for x in snapshot(a, ps)], snapshot(b, qs))


def test_deepcopy_steps_on_its_own():
    import copy

    p = Parameter(np.linspace(-1, 1, 7))
    opt = optim.RMSprop([p], lr=0.01, momentum=0.5, centered=True)
    for _ in range(2):
        p.grad = np.full(7, 0.3)
        opt.step()
    twin = copy.deepcopy(opt)
    q = twin.param_groups[0]["params"][0]
    assert q is not p and twin.state[q]["square_avg"] is not opt.state[p]["square_avg"]
    for _ in range(3):
        p.grad, q.grad = np.full(7, 0.2), np.full(7, 0.2)
        opt.step()
        twin.step()
    assert_same_bits(snapshot(opt, [p]), snapshot(twin, [q]))


def test_parameter_subclasses_step_like_parameters():
    """The step reads an exact Parameter's attributes from its slots, and looks them up on
    a subclass (which may compute them): both give the same steps."""

    class Scaled(Parameter):
        __slots__ = ()

    class Computed(Parameter):
        __slots__ = ("_real_grad",)

        @property
        def _grad(self):  # a subclass overriding the slot: the step must go through it
            return self._real_grad

        @_grad.setter
        def _grad(self, value):
            self._real_grad = value

    datas = make_params(np.float64, 53, [(8,), (3, 2)])
    for cls in (Scaled, Computed):
        ps, qs = [cls(d.copy()) for d in datas], [Parameter(d.copy()) for d in datas]
        a, b = optim.Adadelta(ps, lr=0.5), optim.Adadelta(qs, lr=0.5)
        for step in range(3):
            for p, q in zip(ps, qs):
                p.grad = q.grad = np.full(p.shape, 0.25 * (step + 1))
            a.step()
            b.step()
        assert_same_bits(snapshot(a, ps), snapshot(b, qs))
