"""benchmarks/components.py runs every piece it times and prints one line for each (what it prints is not checked: timings are not tests)."""

import subprocess
import sys

from tests.conftest import REPO


def test_every_component_is_timed():
    result = subprocess.run([sys.executable, "-m", "benchmarks.components", "--repeats", "1"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    timed = [line for line in result.stdout.splitlines() if line.rstrip().endswith((" us", " ms"))]
    assert len(timed) == 17
    assert any(line.startswith("background writer: handing over both") for line in timed)
