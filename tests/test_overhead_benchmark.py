"""benchmarks/overhead.py's plain loop does train.py's work and no more: it validates at the end of whole epochs
only, as Lightning does, not where the step limit ends the run in the middle of one."""

import subprocess
import sys

from tests.conftest import REPO
from tests.idx_files import write_mnist


def test_the_plain_loop_validates_whole_epochs_only(tmp_path):
    data_dir = write_mnist(tmp_path, train_count=5000 + 4 * 128)  # MNIST's 5000 validation images kept: 4 batches an epoch
    marks = tmp_path / "marks.json"
    command = [sys.executable, "-m", "benchmarks.overhead", "--plain", "--steps=10", "--first-step=2", f"--data-dir={data_dir}", f"--marks={marks}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    validated = [line.split(":")[0] for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert validated == ["epoch 0", "epoch 1"]  # steps 1-8; steps 9-10 of epoch 2 end the run unvalidated
    assert marks.exists()
