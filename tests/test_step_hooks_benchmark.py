"""benchmarks/step_hooks.py times Lightning's callback dispatch inside real train.py runs, with and without our
callbacks, and prints a row per step hook (the figures themselves are not checked: timings are not tests)."""

import subprocess
import sys

from benchmarks.step_hooks import STEP_HOOKS
from tests.conftest import REPO


def test_every_step_hook_is_timed_in_both_variants(mnist_dir):
    command = [sys.executable, "-m", "benchmarks.step_hooks", "--repeats", "1", "--steps", "12", "--data-dir", str(mnist_dir), "data.val_size=100", "data.batch_size=32"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[-2:] for line in result.stdout.splitlines() if line.startswith("  on_") or line.startswith("  all six")}
    assert sorted(rows) == sorted([*STEP_HOOKS, "all"])
    assert any(line.startswith("  epoch end, ms") for line in result.stdout.splitlines())
    for hook, (with_ours, bare) in rows.items():
        assert float(with_ours) > 0 and float(bare) > 0, hook
