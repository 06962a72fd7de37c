"""The benchmark registry and `fastnn bench`: every case's implementations compute the
same thing (a wrong NumPy reference or a torch call computing something else fails
here), the floor streams what it claims, the CLI's filters, JSON and errors. No speed
is asserted."""

import json

import numpy as np
import pytest

import fastnn
from fastnn.bench import registry, runner
from fastnn.cli import main

TINY = 1 << 16  # one (1, 64, 32, 32) image; 65 rows of logits
CASES = registry.cases([TINY])


def _arrays(result):
    if isinstance(result, (tuple, list)):
        return [np.asarray(r) for r in result]
    return [np.asarray(result)]


def test_every_family_has_cases():
    from fastnn.bench.families import allreduce

    mpi = {"allreduce"} if allreduce.mpiexec() else set()  # an MPI job's cases: with mpi4py only
    assert {c.family for c in CASES} == {"batch_norm", "activations", "softmax_cross_entropy",
                                         "prelu_maxout", "dropout", "optim", "threads",
                                         "training"} | mpi
    assert len({c.name for c in CASES}) == len(CASES)


def test_cases_of_their_own_size_run_once():
    both = registry.cases([TINY, 2 * TINY])
    own = [c for c in both if c.n not in (TINY, 2 * TINY)]
    assert [c.name for c in own] == [c.name for c in CASES if c.n != TINY]  # once, at the end
    assert both[-len(own):] == own
    assert {"adamw step small1000 256K", "sgd_momentum step small1000 256K",
            "matmul + adamw step loop 100000", "matmul + gelu forward loop 256K"} <= {c.name for c in own}
    assert len(both) - len(own) == 2 * len([c for c in CASES if c.n == TINY])


def test_softmax_cross_entropy_has_few_and_many_classes():
    got = [(c.op, c.layout) for c in CASES if c.family == "softmax_cross_entropy"]
    assert got == [(f"softmax_cross_entropy {d}", f"K={k}") for k in (1000, 10, 2)
                   for d in ("forward", "backward")]
    built = registry.select(CASES, ["softmax_cross_entropy forward K=2 *"])[0].build()
    fastnn_loss, probs = built.impls["fastnn"]()
    assert probs.shape == (TINY // 2, 2)
    # the labels are read too: at K = 2 as many bytes as the logits (int64 per 2 floats)
    assert built.floor.bytes == 2 * probs.nbytes + probs.nbytes


def test_small_tensor_optimizer_case_reports_overhead():
    from fastnn.bench.families import optim

    sizes = optim.split_sizes(1 << 18, "small1000")
    assert len(sizes) == 1000 and sum(sizes) == 1 << 18 and min(sizes) >= 1
    assert sorted(sizes)[500] < 256 < max(sizes)  # mostly small vectors, a few big matrices
    case = registry.select(CASES, ["adamw step small1000*"])[0]
    assert case.n == 1 << 18
    assert case.extra_keys == ("fastnn_one", "fastnn_skip", "torch_foreach")
    assert case.build().overhead


def test_thread_cases_alternate_a_matmul_with_a_kernel():
    from fastnn.bench.families import threads

    case = registry.select(CASES, ["matmul + adamw step"])[0]
    built = case.build()
    assert built.inner == threads.ITERS == built.floor.repeat
    assert built.floor.pattern == "64x256 @ 256x256 matmul + read 1, in place 3 (100000 each)"
    assert built.floor.bytes == 7 * 4 * threads.ADAMW_PARAMS  # one iteration's traffic
    before = fastnn.get_num_threads()
    assert threads._on_threads(1, fastnn.get_num_threads) == 1
    assert fastnn.get_num_threads() == before
    with pytest.raises(ZeroDivisionError):
        threads._on_threads(1, lambda: 1 / 0)
    assert fastnn.get_num_threads() == before  # restored when the loop raises


def test_floor_work_runs_apart_and_counts_one_repeat():
    a, out = np.ones(100, np.float32), np.zeros(100, np.float32)
    calls = []
    floor = registry.Floor(registry.stream([a], [out]), work=("matmul", lambda: calls.append(1)), repeat=3)
    floor()
    assert len(calls) == 3 and floor.bytes == 800
    np.testing.assert_array_equal(out, 1)
    assert floor.pattern == "matmul + read 1, write 1 (100 each)"
    assert runner.copy_of(floor) is None  # a floor that computes has no copy to compare with


def test_a_family_is_one_module_and_one_line(monkeypatch):
    """A module in fastnn.bench.families with cases(), named in FAMILIES, is benchmarked."""
    import sys
    import types

    from fastnn.bench import families

    def make(n, torch):
        a, out = np.arange(n, dtype=np.float32), np.empty(n, np.float32)
        floor = registry.Floor(registry.stream([a], [out]))
        return registry.Built({"fastnn": lambda: a + 1, "numpy": lambda: a + 1, "floor": floor}, floor)

    fake = types.ModuleType("fastnn.bench.families.fake")
    fake.cases = lambda: [registry.Case("fake", "plus_one forward", "flat", make, has_out=False)]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(families, "FAMILIES", families.FAMILIES + ("fake",))
    got = registry.cases([1000, 2000])
    assert [c.name for c in got if c.family == "fake"] == ["plus_one forward flat 1000",
                                                            "plus_one forward flat 2000"]
    first_size = [c.op for c in got if c.n == 1000]
    sized = [c.op for c in CASES if c.n == TINY]
    assert first_size == sized + ["plus_one forward"]  # sizes one after another
    assert [c.op for c in got if c.family == "training"] == [c.op for c in CASES if c.family == "training"]
    (case,) = registry.select(got, ["plus_one"])[:1]
    assert case.n == 1000 and case.impl_names(False) == ["fastnn", "numpy", "floor"]
    np.testing.assert_array_equal(case.build().impls["fastnn"](), np.arange(1000) + 1)


@pytest.fixture(scope="module")
def torch_or_none():
    return runner.import_torch()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_implementations_agree(case, torch_or_none):
    built = case.build(torch_or_none)
    assert list(built.impls) == case.impl_names(torch_or_none is not None)
    outputs = {}
    for name, fn in built.impls.items():
        if name != "floor":
            view = built.views.get(name, lambda r: r)
            outputs[name] = _arrays(view(fn()))
    if built.random_check:
        for name, out in outputs.items():
            built.random_check(out)
        return
    want = outputs.pop("fastnn")
    for name, got in outputs.items():
        assert len(got) >= 1
        for g, w in zip(got, want):  # the outputs both give (torch's loss has no probs)
            assert g.shape == w.shape, name
            atol = 2e-5 * float(np.max(np.abs(w))) + 1e-6  # 1e-6: a float32 update's rounding
            np.testing.assert_allclose(g, w, rtol=2e-4, atol=atol, err_msg=f"{case.name}: {name}")


def test_torch_is_in_every_case(torch):
    built = registry.cases([TINY])[0].build(torch)
    assert "torch" in built.impls


def test_floor_bytes_and_pattern():
    a, b, out = (np.ones(1000, np.float32) for _ in range(3))
    state = [np.zeros(1000, np.float32) for _ in range(2)]
    mask = np.zeros(125, np.uint8)
    floor = registry.Floor(registry.stream([a, b], [out]), registry.stream([a], inplace=state),
                           registry.stream([mask]))
    floor()
    np.testing.assert_array_equal(out, 2)
    np.testing.assert_array_equal(state[1], 1)
    assert floor.bytes == 3 * 4000 + (4000 + 2 * 8000) + 124  # the mask's last partial word left out
    assert floor.pattern == "read 2, write 1 (1000 each) + read 1, in place 2 (1000 each) + read 1 (31 each)"


def test_torch_out_where_torch_has_an_out_form():
    with_out = {c.op.split()[0] for c in CASES if c.torch_out}
    assert with_out == {"batch_norm", "batch_norm_relu", "softmax_cross_entropy", "maxout", "dropout",
                        "relu", "leaky_relu", "elu", "selu", "gelu", "gelu_tanh", "sigmoid", "tanh",
                        "silu", "softplus"}  # not prelu (torch has no out= form), not optimizers
    case = registry.select(CASES, ["gelu forward"])[0]
    assert case.impl_names(True)[:5] == ["fastnn", "fastnn_out", "numpy", "torch", "torch_out"]
    assert "torch_out" not in case.impl_names(False)


def test_torch_out_writes_into_its_preallocated_tensor(torch):
    built = registry.select(CASES, ["sigmoid backward"])[0].build(torch)
    first = built.impls["torch_out"]()
    second = built.impls["torch_out"]()
    assert first.data_ptr() == second.data_ptr()  # no fresh output per call
    assert built.impls["torch"]().data_ptr() != first.data_ptr()


def test_floor_checks_pair_the_rounds():
    # kernel faster than its floor by more than the noise in every round: flagged
    assert runner.beats_floor([0.8, 0.9, 0.85], [1.0, 1.0, 1.0], noise=0.05)
    # one round where it is not (drift hit the floor in the others): not flagged
    assert not runner.beats_floor([0.8, 0.99, 0.85], [1.0, 1.0, 1.0], noise=0.05)
    assert not runner.beats_floor([0.96], [1.0], noise=0.05)  # within the noise
    # paired, not medians: the floor drifted with the kernel round by round
    assert not runner.beats_floor([1.0, 2.0, 4.0], [1.02, 2.04, 4.08], noise=0.05)
    assert not runner.beats_floor([], [])
    assert runner.slower_than_copy([1.2, 1.3], [1.0, 1.0], noise=0.05)
    assert not runner.slower_than_copy([1.2, 1.0], [1.0, 1.0], noise=0.05)
    assert not runner.slower_than_copy([1.04], [1.0], noise=0.05)
    assert not runner.slower_than_copy([1.0], [])


def _fake_case_and_built(**built_kw):
    a, out = np.ones(1000, np.float32), np.empty(1000, np.float32)
    floor = registry.Floor(registry.stream([a, a.copy()], [out]))
    case = registry.Case("fake", "plus forward", "flat", None, n=1000, torch_out=True,
                         extras=(("torch_foreach", "PyTorch foreach"),))
    return case, registry.Built({}, floor, **built_kw)


def test_result_row_from_fake_timings():
    case, built = _fake_case_and_built()
    times = {"fastnn": [2e-3, 2e-3, 2e-3], "fastnn_out": [1e-3, 1e-3, 1e-3], "numpy": [8e-3],
             "torch": [4e-3, 4e-3, 4e-3], "torch_out": [3e-3, 3e-3, 3e-3], "torch_foreach": [5e-3],
             "floor": [1.5e-3, 1.5e-3, 1.5e-3], "copy": [1e-3, 1e-3, 1e-3]}
    row = runner.result_row(case, built, times)
    assert row["ms"] == pytest.approx({"fastnn": 2, "fastnn_out": 1, "numpy": 8, "torch": 4,
                                       "torch_out": 3, "torch_foreach": 5, "floor": 1.5})
    assert "copy" not in row["calls"] and row["calls"]["numpy"] == 1
    assert row["speedup_torch"] == pytest.approx(2) and row["speedup_torch_out"] == pytest.approx(3)
    assert row["copy_ms"] == pytest.approx(1) and row["floor_vs_copy"] == pytest.approx(1.5)
    assert row["flags"] == ["beats_floor", "floor_slower_than_copy"]  # out= 1 ms < floor 1.5 ms
    assert row["bytes"] == 12000 and row["gb_per_s"] == pytest.approx(12000 / 2e-3 / 1e9)
    assert row["labels"] == {"torch_foreach": "PyTorch foreach"} and "overhead_us" not in row

    m = {"cpu": "cpu", "cores": 2, "l3_bytes": None, "simd": "avx2", "threads": 2, "date": "today",
         "versions": {"fastnn": "0", "numpy": "0", "torch": None}}
    text = runner.table([row], m, rounds=3, budget_s=1.0)
    cells = [line for line in text.splitlines() if line.startswith("| plus forward")][0].split(" | ")
    assert cells[7] == "3.00" and cells[12] == "1.33 !" and cells[13] == "1.50 !"  # torch out=, flags
    assert "(1 rows)" in text and "PyTorch foreach 5.00*" in text

    times.update(floor=[1e-3, 0.5e-3, 1e-3], copy=[1e-3, 1e-3, 1e-3])  # drift in one round
    assert runner.result_row(case, built, times)["flags"] == []


def test_result_row_of_a_loop_and_of_an_overhead_case():
    case, built = _fake_case_and_built(inner=10, overhead=True)
    times = {"fastnn": [10e-3], "numpy": [20e-3], "torch": [30e-3], "torch_foreach": [40e-3],
             "floor": [5e-3]}
    row = runner.result_row(case, built, times)
    assert row["ms"] == pytest.approx({"fastnn": 1, "numpy": 2, "torch": 3, "torch_foreach": 4,
                                       "floor": 0.5})  # one iteration of the 10 a call runs
    assert row["iterations_per_call"] == 10 and row["copy_ms"] is None and row["floor_vs_copy"] is None
    assert row["overhead_us"] == pytest.approx({"fastnn": 500, "numpy": 1500, "torch": 2500,
                                                "torch_foreach": 3500})
    assert "per-step overhead over the floor: fastnn 500 us, PyTorch 2500 us, PyTorch foreach 3500 us" in \
        runner.table([row], {"cpu": "", "cores": 1, "l3_bytes": None, "simd": "", "threads": 1, "date": "",
                             "versions": {"fastnn": "", "numpy": "", "torch": ""}}, 1, 1.0)


def test_copy_moves_the_floors_bytes():
    a, out = np.arange(1000, dtype=np.float32), np.empty(1000, np.float32)
    floor = registry.Floor(registry.stream([a, a], [out]))
    copy = runner.copy_of(floor)
    assert copy.src.nbytes + copy.dst.nbytes == floor.bytes == 12000
    copy()
    np.testing.assert_array_equal(copy.dst, copy.src)


def test_select_matches_family_op_and_name():
    def names(patterns):
        return {c.op for c in registry.select(CASES, patterns)}

    assert names(["gelu"]) == {"gelu forward", "gelu backward"}
    assert names(["gelu*"]) == {"gelu forward", "gelu backward", "gelu_tanh forward", "gelu_tanh backward"}
    assert names(["dropout", "adam*"]) == {"dropout forward", "dropout backward", "adam step", "adamw step"}
    assert len(registry.select(CASES, ["optim"])) == 18  # 6 optimizers x (one, mixed200, small1000)
    assert names(["threads"]) == {"matmul + adamw step", "matmul + gelu forward"}
    assert {c.layout for c in registry.select(CASES, ["NHWC"])} == {"NHWC"}  # layouts match too
    with pytest.raises(ValueError, match="no benchmark case matches 'nosuchop'"):
        registry.select(CASES, ["nosuchop"])


def test_default_sizes_are_one_in_cache_and_one_far_beyond():
    import fastnn.bench

    assert [registry.parse_size(s) for s in fastnn.bench.DEFAULT_SIZES] == [1 << 20, 1 << 26]


def test_sizes_parse():
    assert [registry.parse_size(s) for s in ("256K", "64m", "1000")] == [1 << 18, 1 << 26, 1000]
    assert registry.size_label(1 << 26) == "64M" and registry.size_label(1000) == "1000"
    with pytest.raises(ValueError, match="not a count"):
        registry.parse_size("big")


def test_cli_writes_the_table_and_json(tmp_path, capsys):
    path = tmp_path / "new_dir" / "r.json"  # the directory is made
    assert main(["bench", "--quick", "--ops", "relu,dropout", "--sizes", "16K", "--threads", "1",
                 "--json", str(path)]) == 0
    out = capsys.readouterr()
    table = [line for line in out.out.splitlines() if line.startswith("| ") and "---" not in line]
    assert [line.split(" | ")[0] for line in table[1:]] == [
        "| relu forward", "| relu backward", "| dropout forward", "| dropout backward"]
    assert "[4/4" in out.err  # the progress bar (one line per case: not a terminal)
    data = json.loads(path.read_text())
    m = data["machine"]
    assert {"cpu", "cores", "l3_bytes", "simd", "threads", "versions", "date"} <= set(m)
    assert m["threads"] == 1 and m["versions"]["fastnn"] == fastnn.__version__
    assert data["settings"]["sizes"] == ["16K"]
    case = data["cases"][3]
    assert case["op"] == "dropout backward" and case["elements"] == 1 << 14
    assert case["bytes"] == 2 * 4 * (1 << 14) + (1 << 14) // 8
    assert {"fastnn", "fastnn_out", "numpy", "floor", "fastnn_regen"} <= set(case["ms"])
    for key in ("speedup_numpy", "speedup_torch", "speedup_torch_out", "gb_per_s", "vs_floor",
                "floor_pattern", "calls", "copy_ms", "floor_vs_copy", "flags", "iterations_per_call"):
        assert key in case
    assert case["gb_per_s"] == pytest.approx(case["bytes"] / case["ms"]["fastnn"] / 1e6)
    assert case["floor_vs_copy"] == pytest.approx(case["ms"]["floor"] / case["copy_ms"])
    assert case["iterations_per_call"] == 1 and set(case["flags"]) <= {"beats_floor", "floor_slower_than_copy"}


@pytest.mark.parametrize("argv, message", [
    (["--ops", "nosuchop"], "no benchmark case matches 'nosuchop'"),
    (["--sizes", "lots"], "not a count"),
    (["--threads", "0"], "n must be >= 1"),
])
def test_cli_errors(argv, message, capsys):
    assert main(["bench", "--quick"] + argv) == 2
    assert message in capsys.readouterr().err


def test_cli_plot_without_matplotlib_says_so(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["bench", "--quick", "--ops", "relu", "--plot", str(tmp_path / "p.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()


@pytest.mark.parametrize("model", ["digits_mlp", "mlp", "cnn"])
def test_training_steps_agree_without_dropout(torch, model):
    """The training family's fastnn, NumPy and PyTorch steps compute the same thing: with
    dropout off, their losses agree over 5 steps (float32), so each one's backward and
    AdamW update are right too. The fixed-size cases are timed once, at the model's batch."""
    from fastnn.bench.families import training

    case = [c for c in CASES if c.op == f"{model} step"][0]
    assert case.n == int(np.prod(training.MODELS[model][0])) and case.impl_names(True) == [
        "fastnn", "numpy", "torch", "floor"]
    impls = training.build(model, torch, dropout=0.0).impls
    losses = {name: [float(impls[name]()) for _ in range(5)] for name in ("fastnn", "numpy", "torch")}
    assert losses["fastnn"][-1] < losses["fastnn"][0]  # it learns
    for name in ("numpy", "torch"):
        np.testing.assert_allclose(losses[name], losses["fastnn"], rtol=2e-4, err_msg=name)
