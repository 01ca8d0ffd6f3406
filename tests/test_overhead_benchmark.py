"""benchmarks/overhead.py's baselines do train.py's work and no more: the plain loop validates at the end of whole
epochs only, as Lightning does, not where the step limit ends the run in the middle of one; the lightning variant
runs the plain loop's steps in a Trainer and trains exactly as the plain loop does. The benchmark reports each
variant against the plain loop, and those built on Lightning's loop against the lightning variant too (the figures
themselves are not checked: timings are not tests)."""

import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.idx_files import write_mnist


@pytest.fixture(scope="module")
def four_batches_an_epoch(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data"), train_count=5000 + 4 * 128)  # MNIST's 5000 validation images kept


def epoch_lines(variant: str, data_dir, tmp_path) -> list[str]:
    """The per-epoch report lines of a 10-step run of the plain loop or the lightning variant."""
    marks = tmp_path / f"{variant}.json"
    command = [sys.executable, "-m", "benchmarks.overhead", f"--{variant}", "--steps=10", "--first-step=2", f"--data-dir={data_dir}", f"--marks={marks}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert marks.exists()
    return [line for line in result.stdout.splitlines() if line.startswith("epoch ")]


def test_the_plain_loop_validates_whole_epochs_only(four_batches_an_epoch, tmp_path):
    validated = [line.split(":")[0] for line in epoch_lines("plain", four_batches_an_epoch, tmp_path)]
    assert validated == ["epoch 0", "epoch 1"]  # steps 1-8; steps 9-10 of epoch 2 end the run unvalidated


def test_the_lightning_variant_trains_exactly_as_the_plain_loop(four_batches_an_epoch, tmp_path):
    plain = epoch_lines("plain", four_batches_an_epoch, tmp_path)
    assert len(plain) == 2 and epoch_lines("lightning", four_batches_an_epoch, tmp_path) == plain  # the same losses and accuracies, to 4 digits


def test_the_benchmark_reports_every_variant_against_the_plain_loop_and_the_lightning_floor(four_batches_an_epoch):
    command = [sys.executable, "-m", "benchmarks.overhead", "--repeats=1", "--steps=7", "--first-step=2", f"--data-dir={four_batches_an_epoch}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = {line.split(":")[0].strip(): line for line in result.stdout.splitlines() if line.startswith("  ") and " ms (runs " in line}
    assert sorted(rows) == sorted(["plain", "lightning", "bare", "train.py"])
    assert "(paired" not in rows["plain"] and rows["lightning"].count("(paired") == 1 and rows["lightning"].endswith(") to plain")
    assert all(rows[variant].count("(paired") == 2 and rows[variant].endswith(") to lightning") for variant in ("bare", "train.py"))
