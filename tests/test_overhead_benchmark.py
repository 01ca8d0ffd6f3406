"""benchmarks/overhead.py runs train.py, the bare Lightning Trainer and the plain loop and reports each against the ones
below it (the figures themselves are not checked: timings are not tests)."""

import subprocess
import sys

import pytest

from tests.helpers.commands import REPO
from tests.helpers.idx_files import write_mnist

# minutes of CPU: run by `pytest -m slow`
pytestmark = pytest.mark.slow


def test_the_benchmark_reports_train_py_and_the_bare_trainer_against_the_plain_loop(tmp_path):
    data_dir = write_mnist(
        tmp_path, train_count=5000 + 4 * 128
    )  # MNIST's 5000 validation images kept, 4 batches an epoch
    command = [
        sys.executable,
        "-m",
        "benchmarks.overhead",
        "--repeats=1",
        "--steps=7",
        "--first-step=2",
        f"--data-dir={data_dir}",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {
        line.split(":")[0].strip(): line
        for line in result.stdout.splitlines()
        if line.startswith("  ") and " ms (runs " in line
    }
    assert sorted(rows) == sorted(["plain", "lightning", "train.py"])
    assert (
        "(paired" not in rows["plain"]
        and rows["lightning"].count("(paired") == 1
        and rows["lightning"].endswith(") to plain")
    )
    assert rows["train.py"].count("(paired") == 2 and rows["train.py"].endswith(") to lightning")
