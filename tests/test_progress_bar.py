"""The per-step training values reach the progress bar without Lightning turning them into numbers after every
batch (a device sync per step on a GPU): callbacks/progress_bar.py reads them when it redraws."""

import pytest
from lightning import Trainer

from callbacks.progress_bar import TQDMProgressBar
from datamodules.fake import FakeDataModule
from lightning_modules.classifier import ImageClassifier


def test_step_values_are_shown_by_the_bar_not_converted_by_lightning_every_batch(tmp_path):
    datamodule = FakeDataModule(input_shape=(1, 28, 28), num_classes=10, train_size=64, val_size=16, test_size=16, batch_size=8)
    module = ImageClassifier(net={"_target_": "lightning_modules.nets.lenet.LeNet5"}, optimizer={"_target_": "torch.optim.SGD", "lr": 0.01}, scheduler=None, input_shape=(1, 28, 28), num_classes=10)
    bar = TQDMProgressBar(refresh_rate=1)
    trainer = Trainer(accelerator="cpu", max_steps=10, log_every_n_steps=2, callbacks=[bar], logger=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(module, datamodule)
    # Lightning calls .item() on every progress_bar_metrics value after every training batch
    assert not any(name.startswith("train_step/") for name in trainer.progress_bar_metrics)
    shown = bar.get_metrics(trainer, module)
    assert {"train_step/loss", "train_step/top1"} <= set(shown)
    assert isinstance(shown["train_step/loss"], float) and shown["train_step/loss"] == pytest.approx(trainer.callback_metrics["train_step/loss"].item())
    assert "val/top1" in shown  # what the module logs with prog_bar=True (at the end of epoch 0) is still there
