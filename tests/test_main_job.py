"""The README's main command, verbatim, in a fresh copy of the repository: real MNIST (the shipped copy), 10 epochs."""

import pytest

from tests.helpers.commands import fresh_copy, run_in_shell
from tests.helpers.tensorboard_events import read_scalars


@pytest.mark.slow
def test_the_main_job_reaches_98_9_percent_test_top1(tmp_path):
    checkout = fresh_copy(tmp_path / "classic-dl")
    result = run_in_shell("python train.py", checkout, timeout=3600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    (run_dir,) = (checkout / "logs" / "train" / "runs").iterdir()
    assert result.stdout.strip().splitlines()[-1].endswith(f"Output dir: {run_dir}")
    assert (checkout / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file()  # unpacked from the shipped copy
    test_top1 = read_scalars(run_dir / "tensorboard")["test/top1"][-1][1]
    assert test_top1 >= 0.989, f"test top-1 {test_top1:.4f} < 0.989"
