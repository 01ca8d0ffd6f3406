"""The per-step training values reach the progress bar without Lightning turning them into numbers after every
batch (a device sync per step on a GPU): callbacks/progress_bar.py reads them when it redraws."""

import pytest
from lightning import Trainer
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from callbacks.progress_bar import TQDMProgressBar
from datamodules.fake import FakeDataModule
from lightning_modules.classifier import ImageClassifier


def fit_with(bar: TQDMProgressBar, root) -> tuple[Trainer, ImageClassifier]:
    """10 LeNet steps on fake 28x28 images, 8 batches an epoch."""
    datamodule = FakeDataModule(input_shape=(1, 28, 28), num_classes=10, train_size=64, val_size=16, test_size=16, batch_size=8)
    module = ImageClassifier(net={"_target_": "lightning_modules.nets.lenet.LeNet5"}, optimizer={"_target_": "torch.optim.SGD", "lr": 0.01}, scheduler=None, input_shape=(1, 28, 28), num_classes=10)
    trainer = Trainer(accelerator="cpu", max_steps=10, log_every_n_steps=2, callbacks=[bar], logger=False, enable_checkpointing=False, enable_model_summary=False, default_root_dir=root)
    trainer.fit(module, datamodule)
    return trainer, module


def test_step_values_are_shown_by_the_bar_not_converted_by_lightning_every_batch(tmp_path):
    bar = TQDMProgressBar(refresh_rate=1)
    trainer, module = fit_with(bar, tmp_path)
    # Lightning calls .item() on every progress_bar_metrics value after every training batch
    assert not any(name.startswith("train_step/") for name in trainer.progress_bar_metrics)
    shown = bar.get_metrics(trainer, module)
    assert {"train_step/loss", "train_step/top1"} <= set(shown)
    assert isinstance(shown["train_step/loss"], float) and shown["train_step/loss"] == pytest.approx(trainer.callback_metrics["train_step/loss"].item())
    assert "val/top1" in shown  # what the module logs with prog_bar=True (at the end of epoch 0) is still there


def test_the_training_bar_is_drawn_once_per_update_with_the_count_and_the_values(tmp_path, monkeypatch):
    bar, draws_per_batch, recording = TQDMProgressBar(refresh_rate=2), [], [False]

    def draw(tqdm, *args, **kwargs) -> None:
        if recording[0]:
            draws_per_batch[-1].append((tqdm.n, dict(getattr(tqdm, "postfix_values", {}))))

    monkeypatch.setattr(Tqdm, "refresh", draw)
    monkeypatch.setattr(Tqdm, "set_postfix", lambda tqdm, values, refresh=True: (setattr(tqdm, "postfix_values", values), refresh and tqdm.refresh()))
    batch_end = bar.on_train_batch_end

    def watched(*args) -> None:  # the draws made by the bar's on_train_batch_end, one list per batch
        draws_per_batch.append([])
        recording[0] = True
        batch_end(*args)
        recording[0] = False

    bar.on_train_batch_end = watched  # Lightning looks the hook up on the instance
    fit_with(bar, tmp_path)
    updates = [draws for draws in draws_per_batch if draws]
    assert all(len(draws) == 1 for draws in updates), updates
    assert [draws[0][0] for draws in updates] == [2, 4, 6, 8, 2]  # epoch 0: batches 2, 4, 6, 8; epoch 1: batch 2 (step 10 ends the run)
    assert all("train_step/loss" in values for (_, values), in updates[1:])  # logged at step 2, shown from the next update on
