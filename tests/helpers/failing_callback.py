"""Callbacks that make a train.py run fail or die at a chosen moment (tests add them with +callbacks.fail=... or +callbacks.kill=...)."""

import os
import signal
from pathlib import Path

import torch
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

from user_errors import UserError


class FailAtEpoch(Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise UserError(f"Stopped on purpose at the start of epoch {self.epoch}.")


class RaiseAtEpoch(Callback):
    """A bug, not a user's mistake: a TypeError without a message at the start of a chosen epoch."""

    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.current_epoch == self.epoch:
            raise TypeError


class KillAt(Checkpoint):
    """SIGKILLs its own process at a chosen moment, as a power cut or the OOM killer would (tests add it with
    +callbacks.kill=...). `epoch_end`: right after the epoch's last.ckpt is written, before Lightning logs the
    epoch's train/* means (a Checkpoint's on_train_epoch_end runs after the others', and this one after
    last_checkpoint's: it checks that last.ckpt holds this epoch). `saving`: while the epoch's first checkpoint is
    being written, so that last.ckpt still holds the epoch before. `test_start`: in the test phase.
    `sigterm_in_sanity_check` and `sigterm_after_training` send SIGTERM instead, at those moments.
    It kills only while the file `once` does not exist, and creates it first: resume=true with the same config lives."""

    def __init__(self, moment: str, once: str, epoch: int = 0):
        self.moment, self.once, self.epoch = moment, Path(once), epoch

    def _kill(self) -> None:
        if self.once.exists():
            return
        self.once.touch()
        os.kill(os.getpid(), signal.SIGKILL)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.moment == "epoch_end" and trainer.current_epoch == self.epoch and not self.once.exists():
            (last,) = (
                Path(callback.dirpath) / "last.ckpt"
                for callback in trainer.callbacks
                if isinstance(callback, ModelCheckpoint) and callback.filename == "last"
            )
            saved_epoch = torch.load(last, map_location="cpu", weights_only=True)["epoch"]
            assert saved_epoch == self.epoch, (
                f"{last} holds epoch {saved_epoch}, not {self.epoch}: KillAt ran before last_checkpoint"
            )
            self._kill()

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.moment == "sigterm_in_sanity_check" and not self.once.exists():
            self.once.touch()
            os.kill(os.getpid(), signal.SIGTERM)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.moment == "sigterm_after_training" and not self.once.exists():
            self.once.touch()
            os.kill(os.getpid(), signal.SIGTERM)  # after every epoch-end hook, before StopOnSignal's on_train_end

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict) -> None:
        if self.moment == "saving" and trainer.current_epoch == self.epoch:
            self._kill()

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.moment == "test_start":
            self._kill()
