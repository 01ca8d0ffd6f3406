"""benchmarks/gpu_check.py's smoke mode, end to end: every section runs on the CPU and writes a table of numbers."""

import csv
import math
import os
import subprocess
import sys

import pytest

from tests.helpers.commands import REPO

# for each section's CSV: the columns that must hold a positive number in every row that was measured
MEASURED = {
    "section1_resnet18_throughput.csv": ("images_per_s", "step_ms", "tflops"),
    "section2_tiny_imagenet_path.csv": ("images", "seconds", "images_per_s"),
    "section3_mnist_fast.csv": ("wall_s", "train_samples_per_s"),
    "section4_lenet_step_overhead.csv": ("step_ms", "vs_plain"),
    "section5_ddp_one_device.csv": ("samples_per_s", "epoch_s", "wall_s", "vs_single_device"),
}
# the rows each section must have measured, by their first column
ROWS = {
    "section1_resnet18_throughput.csv": (
        "variant",
        {
            "fp32",
            "bf16",
            "bf16 + channels_last",
            "bf16 + channels_last + compile",
            "bf16 + channels_last + compile + data on device",
        },
    ),
    "section2_tiny_imagenet_path.csv": ("stage", {"generate JPEGs", "decoded cache", "one epoch of train.py"}),
    "section4_lenet_step_overhead.csv": (
        "variant",
        {
            "plain loop",
            "bare Lightning Trainer, nothing logged",
            "train.py (its defaults: progress bar redrawn every 20 steps)",
        },
    ),
}


@pytest.mark.slow
def test_smoke_run_writes_every_section_table(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--out", str(out), "--smoke"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-5000:]

    report = (out / "gpu_check.md").read_text()
    assert "failed" not in report and "was stopped" not in report and "skipped" not in report, report
    for name, columns in MEASURED.items():
        with (out / name).open(newline="") as file:
            rows = list(csv.DictReader(file))
        assert rows, f"{name} has no rows"
        for row in rows:
            for column in columns:
                value = float(row[column])
                assert math.isfinite(value) and value > 0, (name, column, row)
    for name, (column, expected) in ROWS.items():
        with (out / name).open(newline="") as file:
            found = {row[column] for row in csv.DictReader(file)}
        assert expected <= found, (name, expected - found)
    with (out / "section3_mnist_fast.csv").open(newline="") as file:
        assert all(0 <= float(row["test_top1"]) <= 1 for row in csv.DictReader(file))
    for section in "12345":  # the tables are on stdout too
        assert f"## {section}. " in result.stdout
    assert sorted(path.name for path in out.iterdir()) == sorted(
        [*MEASURED, "gpu_check.md"]
    )  # the GPU machine returns at most 8 files
