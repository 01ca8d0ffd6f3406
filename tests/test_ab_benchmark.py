"""benchmarks/ab.py times train.py's steps under two sets of overrides and prints both and their ratio
(the figures themselves are not checked: timings are not tests)."""

import subprocess
import sys

import pytest

from tests.helpers.commands import REPO

# minutes of CPU: run by `pytest -m slow`
pytestmark = pytest.mark.slow


def test_both_variants_are_timed_and_compared(mnist_dir):
    command = [
        sys.executable, "-m", "benchmarks.ab", "--a", "trainer.log_every_n_steps=1", "--b", "trainer.log_every_n_steps=4 model.batch_norm=true",
        "--steps=6", "--first-step=2", "--repeats=1", f"--data-dir={mnist_dir}", "data.batch_size=32", "data.val_size=100",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("  A: trainer.log_every_n_steps=1: ") and "ms per step" in line for line in lines)
    assert any(line.startswith("  B: trainer.log_every_n_steps=4 model.batch_norm=true: ") for line in lines)
    (ratio,) = [line for line in lines if line.startswith("  B/A: ")]
    assert float(ratio.split()[1]) > 0
