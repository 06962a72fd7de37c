"""The scripts in examples/ still run against the current API (a couple of epochs each)."""

import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("sklearn", reason="the examples need the examples extra (scikit-learn)")

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.parametrize("script,args", [("train_cnn_by_hand.py", ["--epochs", "2"]),
                                         ("hyperparameter_search.py", ["--trials", "2", "--epochs", "2"])])
def test_example_runs(tmp_path, script, args):
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(proc.stdout.rsplit("test accuracy ", 1)[1].split("%")[0])
    assert accuracy > 50  # two epochs are enough to be far above chance (10%)
