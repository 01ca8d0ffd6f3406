"""benchmarks/device_speed.py lists the settings a machine cannot run as skipped, with the reason, and runs none of them;
data=fake gives speed runs images of the chosen shape."""

import os
import subprocess
import sys

import pytest

from runs.build import build_datamodule
from tests.helpers.commands import REPO
from tests.helpers.compose import compose_config

sys.path.insert(0, str(REPO / "benchmarks"))
import device_speed  # noqa: E402  (a script, not a package module)

CORES = len(os.sched_getaffinity(0))


def test_settings_without_their_devices_are_skipped_not_run(tmp_path):
    hidden_gpus = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU for torch, whatever the machine has
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.device_speed", "--settings", "gpu,gpu_ddp", "--out", str(tmp_path)],
        cwd=REPO,
        env=hidden_gpus,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "skipped" in line]
    assert rows == [
        f"| 1 GPU | 1 | {CORES} | 128 | | skipped: no GPU that torch can use on this machine | | | | | |",
        f"| DDP on 2 GPUs | 2 | {max(1, CORES // 2)} | 256 | | skipped: needs 2 GPUs or more, this machine has 0 | | | | | |",
    ]
    assert (
        "precision 32-true; data.batch_size=128 per process" in result.stdout
        and f"gpu {CORES}, gpu_ddp {max(1, CORES // 2)}" in result.stdout
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["device_speed.md"]  # no run directory: nothing ran
    assert (tmp_path / "device_speed.md").read_text() == result.stdout.rstrip("\n") + "\n"


def test_fake_data_defaults_to_tiny_imagenets_shape_with_the_split_sizes_asked_for(tmp_path):
    cfg = compose_config(
        ["data=fake", "data.train_size=40", "data.val_size=12", "data.test_size=8", "data.batch_size=16"], tmp_path
    )
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    assert (datamodule.input_shape, datamodule.num_classes) == ((3, 64, 64), 200)
    assert [len(datamodule.dataset(split)) for split in ("train", "val", "test")] == [40, 12, 8]
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (16, 3, 64, 64) and int(batch["label"].max()) < 200


def measured(name: str, processes: int, samples_per_s: float, load: float, threads: int = 1) -> device_speed.Setting:
    setting = device_speed.Setting(name, name, "cpu", [], processes, threads=threads)
    setting.samples_per_s, setting.samples, setting.epoch_s, setting.wall_s, setting.load_before = (
        [samples_per_s],
        [40960.0],
        [1.0],
        [2.0],
        [load],
    )
    return setting


def test_an_efficiency_above_100_percent_is_marked_as_an_artefact_with_its_reason():
    text = device_speed.table(
        [measured("cpu", 1, 1000, load=6.0), measured("cpu_ddp", 2, 7910, load=1.0)], ["data.batch_size=64"]
    )
    ddp_row = next(line for line in text.splitlines() if line.startswith("| cpu_ddp |"))
    assert ddp_row.endswith("| 7.91x | 396% (artefact, see below) |") and "| 2 | 1 | 128 | 320 |" in ddp_row
    assert (
        "396% efficiency is a measurement artefact" in text
        and "busier during the 1-process run (load 6.0 against 1.0)" in text
    )
    honest = device_speed.table([measured("cpu", 1, 1000, load=1.0), measured("cpu_ddp", 2, 1060, load=1.0)], [])
    assert "artefact" not in honest and "| 1.06x | 53% |" in honest


@pytest.mark.slow
def test_each_setting_runs_with_its_threads_pinned(tmp_path):
    small = ["data.train_size=1024", "data.val_size=256", "trainer.max_epochs=1"]
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.device_speed", "--settings", "cpu,cpu_ddp", "--out", str(tmp_path), *small],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    rows = {line.split(" | ")[0]: line.split(" | ") for line in result.stdout.splitlines() if line.startswith("| CPU")}
    assert rows["| CPU, 1 process"][2] == str(CORES) and rows["| CPU, DDP 2 processes (gloo)"][2] == str(
        max(1, CORES // 2)
    )
    assert (
        rows["| CPU, 1 process"][4] == "8" and rows["| CPU, DDP 2 processes (gloo)"][4] == "4"
    )  # 1024 samples, global batch 128 / 256
