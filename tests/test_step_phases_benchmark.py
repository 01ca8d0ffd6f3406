"""benchmarks/step_phases.py clocks the forward, backward and optimizer update inside the plain loop, the plain loop in
Lightning's Trainer, bare and train.py, and prints a row per phase of a step and the host's reads of tensor values per step (the figures themselves are not checked: timings are not tests)."""

import subprocess
import sys

from benchmarks.step_phases import PHASES
from tests.conftest import REPO
from tests.idx_files import write_mnist


def test_every_phase_is_timed_in_every_variant(tmp_path):
    data_dir = write_mnist(tmp_path, train_count=5000 + 4 * 128)  # the plain loop keeps MNIST's 5000 validation images: 4 batches an epoch
    command = [sys.executable, "-m", "benchmarks.step_phases", "--repeats", "1", "--steps", "7", "--first-step", "2", "--data-dir", str(data_dir)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {label: line[2 + 24 :].split() for line in result.stdout.splitlines() for label in [*PHASES.values(), "all phases"] if line[2:].startswith(f"{label:<24}")}
    assert sorted(rows) == sorted([*PHASES.values(), "all phases"])
    for label, figures in rows.items():
        assert len(figures) == 4 and all(float(figure) > 0 for figure in figures), (label, figures)
    reads = [line.split()[-4:] for line in result.stdout.splitlines() if line.startswith("  item() calls per step")]
    assert len(reads) == 1 and all(float(figure) >= 0 for figure in reads[0])
