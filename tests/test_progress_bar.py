"""The progress bar (Lightning's TQDMProgressBar, conf/callbacks/progress_bar.yaml) shows the latest per-step training
values and the validation accuracy."""

from lightning import Trainer
from lightning.pytorch.callbacks import TQDMProgressBar

from datamodules.fake import FakeDataModule
from lightning_modules.classifier import ImageClassifier


def test_the_bar_shows_the_step_values_and_the_validation_accuracy(tmp_path):
    datamodule = FakeDataModule(
        input_shape=(1, 28, 28), num_classes=10, train_size=64, val_size=16, test_size=16, batch_size=8
    )
    module = ImageClassifier(
        net={"_target_": "lightning_modules.nets.lenet.LeNet5"}, optimizer={"_target_": "torch.optim.SGD", "lr": 0.01},
        scheduler=None, input_shape=(1, 28, 28), num_classes=10,
    )  # fmt: skip
    bar = TQDMProgressBar(refresh_rate=1)
    trainer = Trainer(
        accelerator="cpu", max_steps=10, log_every_n_steps=2, callbacks=[bar], logger=False, enable_checkpointing=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule)
    shown = bar.get_metrics(trainer, module)
    assert {"train_step/loss", "train_step/top1", "val/top1"} <= set(shown)
    assert shown["train_step/loss"] == trainer.callback_metrics["train_step/loss"].item()
