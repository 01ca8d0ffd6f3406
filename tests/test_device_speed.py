"""benchmarks/device_speed.py lists the settings a machine cannot run as skipped, with the reason, and runs none of them;
data=fake gives speed runs images of the chosen shape."""

import os
import subprocess
import sys

from core.build import build_datamodule
from tests.compose import compose_config
from tests.conftest import REPO


def test_settings_without_their_devices_are_skipped_not_run(tmp_path):
    hidden_gpus = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU for torch, whatever the machine has
    result = subprocess.run(
        [sys.executable, "benchmarks/device_speed.py", "--settings", "gpu,gpu_ddp", "--out", str(tmp_path)],
        cwd=REPO, env=hidden_gpus, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "skipped" in line]
    assert rows == [
        "| 1 GPU | 1 | skipped: no GPU that torch can use on this machine | | | | |",
        "| DDP on 2 GPUs | 2 | skipped: needs 2 GPUs or more, this machine has 0 | | | | |",
    ]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["device_speed.md"]  # no run directory: nothing ran
    assert (tmp_path / "device_speed.md").read_text() == result.stdout.rstrip("\n") + "\n"


def test_fake_data_defaults_to_tiny_imagenets_shape_with_the_split_sizes_asked_for(tmp_path):
    cfg = compose_config(["data=fake", "data.train_size=40", "data.val_size=12", "data.test_size=8", "data.batch_size=16"], tmp_path)
    datamodule = build_datamodule(cfg)
    datamodule.setup("fit")
    assert (datamodule.input_shape, datamodule.num_classes) == ((3, 64, 64), 200)
    assert [len(datamodule.dataset(split)) for split in ("train", "val", "test")] == [40, 12, 8]
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (16, 3, 64, 64) and int(batch["label"].max()) < 200
