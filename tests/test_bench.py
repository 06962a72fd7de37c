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
                                         "prelu_maxout", "dropout", "optim", "training"} | mpi
    assert len({c.name for c in CASES}) == len(CASES)


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


def test_select_matches_family_op_and_name():
    def names(patterns):
        return {c.op for c in registry.select(CASES, patterns)}

    assert names(["gelu"]) == {"gelu forward", "gelu backward"}
    assert names(["gelu*"]) == {"gelu forward", "gelu backward", "gelu_tanh forward", "gelu_tanh backward"}
    assert names(["dropout", "adam*"]) == {"dropout forward", "dropout backward", "adam step", "adamw step"}
    assert len(registry.select(CASES, ["optim"])) == 18  # 6 optimizers x (one, mixed200, small1000)
    with pytest.raises(ValueError, match="no benchmark case matches 'nosuchop'"):
        registry.select(CASES, ["nosuchop"])


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
    for key in ("speedup_numpy", "speedup_torch", "gb_per_s", "vs_floor", "floor_pattern", "calls"):
        assert key in case
    assert case["gb_per_s"] == pytest.approx(case["bytes"] / case["ms"]["fastnn"] / 1e6)


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
