"""callbacks/model_checkpoint.py: Lightning's ModelCheckpoint with its state key built once and no per-step work
when it saves at epoch ends only; it must keep Lightning's keys and still save on step triggers."""

from datetime import timedelta

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as LightningModelCheckpoint

from callbacks.last_checkpoint import LastCheckpoint
from callbacks.model_checkpoint import ModelCheckpoint
from tests.conftest import TINY, run_entry

SETTINGS = [
    {"monitor": "val/top1", "mode": "max", "save_top_k": 1},
    {"every_n_epochs": 3, "save_top_k": -1},
    {"every_n_train_steps": 7, "save_top_k": -1},
    {"train_time_interval": timedelta(minutes=5)},
    {"monitor": "val/loss", "mode": "min", "every_n_epochs": 2},
]


@pytest.mark.parametrize("settings", SETTINGS)
def test_the_state_key_is_lightnings(settings, tmp_path):
    """Checkpoints written with Lightning's class store the callback's state under this key: they must still load."""
    ours = ModelCheckpoint(dirpath=tmp_path, **settings)
    assert ours.state_key == LightningModelCheckpoint(dirpath=tmp_path, **settings).state_key
    assert ours.state_key.startswith("ModelCheckpoint{")


def test_last_checkpoint_keeps_a_key_of_its_own(tmp_path):
    last, periodic = LastCheckpoint(dirpath=str(tmp_path)), ModelCheckpoint(dirpath=tmp_path, every_n_epochs=1, save_top_k=-1)
    assert last.state_key.startswith("LastCheckpoint{") and last.state_key != periodic.state_key


def test_a_step_trigger_still_saves_within_epochs(mnist_dir, tmp_path):
    """every_n_train_steps takes Lightning's per-step path: 500 training images in batches of 32 are 16 steps an
    epoch, so 2 epochs save at steps 5, 10, ..., 30; the epoch checkpoints of the default callbacks are all there too."""
    step_checkpoint = "+callbacks.step_checkpoint"
    run_entry(
        "train.py", *TINY, f"data.data_dir={mnist_dir}", f"hydra.run.dir={tmp_path}", "test=false",
        f"{step_checkpoint}._target_=callbacks.model_checkpoint.ModelCheckpoint", f"{step_checkpoint}.dirpath={tmp_path}/steps",
        f"{step_checkpoint}.filename='step{{step:03d}}'", f"{step_checkpoint}.auto_insert_metric_name=false",
        f"{step_checkpoint}.every_n_train_steps=5", f"{step_checkpoint}.save_top_k=-1",
    )  # fmt: skip
    assert sorted(path.name for path in (tmp_path / "steps").iterdir()) == [f"step{step:03d}.ckpt" for step in range(5, 35, 5)]
    assert torch.load(tmp_path / "steps" / "step030.ckpt", weights_only=False)["global_step"] == 30
    epoch_files = sorted(path.name for path in (tmp_path / "checkpoints").iterdir())
    assert epoch_files[0].startswith("best-epoch") and epoch_files[1:] == ["epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]
